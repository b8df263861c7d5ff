package dev.boxsync.peer;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.HashMap;
import java.util.Map;

/**
 * The aggregate of one task's window: the latest change per field and the last author.
 *
 * "Latest" is by (occurred_at, tiebreak); on a tie the change read later wins, so the result
 * is boxsync's order (source time, tiebreak, offset) for changes of one partition. The author
 * is the latest change that names a person, the technical user only when none does, as in
 * boxsync. Serialized as JSON into the window store and its changelog (JsonSerde).
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public final class WindowState {
    public Map<String, Latest> fields = new HashMap<>();
    public Change.Person author; // the latest change naming a person
    public long authorAt = Long.MIN_VALUE;
    public String authorTiebreak = "";
    public Change.Person lastAuthor; // the latest change of all, for a window of technical ones
    public long lastAt = Long.MIN_VALUE;
    public String lastTiebreak = "";
    public int count;

    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Latest {
        public long at;
        public String tiebreak = "";
        public JsonNode value;
    }

    public WindowState add(Change change) {
        long at = change.at();
        String tiebreak = change.tiebreak == null ? "" : change.tiebreak;
        count++;
        if (change.changes != null) {
            for (Map.Entry<String, JsonNode> entry : change.changes.entrySet()) {
                Latest latest = fields.get(entry.getKey());
                if (latest == null) {
                    latest = new Latest();
                    fields.put(entry.getKey(), latest);
                } else if (before(at, tiebreak, latest.at, latest.tiebreak)) {
                    continue;
                }
                latest.at = at;
                latest.tiebreak = tiebreak;
                latest.value = entry.getValue();
            }
        }
        if (change.author != null) {
            if (!before(at, tiebreak, lastAt, lastTiebreak)) {
                lastAuthor = change.author;
                lastAt = at;
                lastTiebreak = tiebreak;
            }
            if (!change.author.technical() && !before(at, tiebreak, authorAt, authorTiebreak)) {
                author = change.author;
                authorAt = at;
                authorTiebreak = tiebreak;
            }
        }
        return this;
    }

    public Change.Person effectiveAuthor() {
        return author != null ? author : lastAuthor;
    }

    /** True when (at, tiebreak) orders strictly before (otherAt, otherTiebreak). */
    private static boolean before(long at, String tiebreak, long otherAt, String otherTiebreak) {
        return at < otherAt || (at == otherAt && tiebreak.compareTo(otherTiebreak) < 0);
    }
}
