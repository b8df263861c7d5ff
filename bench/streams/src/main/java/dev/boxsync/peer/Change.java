package dev.boxsync.peer;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.Map;

/**
 * The parts of boxsync's ChangeEvent (docs/contract.md section 2, on sync.changes) that the
 * peer reads; other fields are skipped.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public final class Change {
    @JsonProperty("task_id")
    public String taskId;

    @JsonProperty("occurred_at")
    public String occurredAt;

    /** The upstream order for equal source times (Jira changelog id, Trello action id). */
    public String tiebreak = "";

    public Person author;

    /** Field name to new value, in boxsync's normalized field names. */
    public Map<String, JsonNode> changes;

    @JsonIgnore
    private long at = Long.MIN_VALUE;

    /** occurred_at in epoch milliseconds, or -1 when it is missing or not an ISO-8601 time. */
    public long at() {
        if (at == Long.MIN_VALUE) {
            at = parse(occurredAt);
        }
        return at;
    }

    static long parse(String text) {
        if (text == null) {
            return -1;
        }
        try {
            return Instant.parse(text).toEpochMilli(); // the form ingest writes: ...T12:00:00.000Z
        } catch (RuntimeException zulu) {
            try {
                return OffsetDateTime.parse(text).toInstant().toEpochMilli();
            } catch (RuntimeException other) {
                return -1;
            }
        }
    }

    /** A person as boxsync writes one: kind user, scope_owner or technical. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public static final class Person {
        public String kind;
        public String id;
        public String name;
        public String source;

        @JsonIgnore
        public boolean technical() {
            return "technical".equals(kind);
        }
    }
}
