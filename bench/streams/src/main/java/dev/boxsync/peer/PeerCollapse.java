package dev.boxsync.peer;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * boxsync's collapse written as a plain Kafka Streams application, the peer that `make bench`
 * measures boxsync against (bench/peer.py).
 *
 * <p>Reads ChangeEvents from the input topic (key: task id), event time from occurred_at,
 * tumbling windows of the collapse interval with the grace, per window the latest change per
 * field and the last author, suppressed until the window closes (unbounded buffer), and writes
 * one JSON record per window to the output topic: task_id, window_start, window_end,
 * author_id, fields (the changed field names, sorted), count.
 *
 * <p>It stops by itself once the input has been consumed to its end (the consumers' records-lag
 * of every input partition is 0) and no record has arrived for the idle time, and prints one
 * JSON line: records read, windows emitted, wall seconds from the first record read to the
 * last record read or window emitted, whichever is later.
 */
public final class PeerCollapse {
    private static final DateTimeFormatter ISO =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    private static final AtomicLong RECORDS = new AtomicLong();
    private static final AtomicLong WINDOWS = new AtomicLong();
    private static final AtomicLong FIRST_RECORD_MS = new AtomicLong();
    private static final AtomicLong LAST_RECORD_MS = new AtomicLong();
    private static final AtomicLong LAST_EMIT_MS = new AtomicLong();

    private PeerCollapse() {}

    /** Event time: the change's occurred_at; counts and times the records read. */
    public static final class OccurredAt implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            long now = System.currentTimeMillis();
            if (RECORDS.getAndIncrement() == 0) {
                FIRST_RECORD_MS.set(now);
                say(Map.of("event", "first_record", "at_ms", now));
            }
            LAST_RECORD_MS.set(now);
            // A negative time makes Kafka Streams skip the record (counted as dropped).
            return record.value() instanceof Change change ? change.at() : -1;
        }
    }

    public static void main(String[] argv) throws Exception {
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel",
                System.getProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn"));
        Map<String, String> args = parse(argv);
        String bootstrap = option(args, "bootstrap", "BOXSYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092");
        String input = option(args, "input", "PEER_INPUT_TOPIC", "sync.changes");
        String output = option(args, "output", "PEER_OUTPUT_TOPIC", "peer.updates");
        String applicationId = option(args, "application-id", "PEER_APPLICATION_ID", "boxsync-peer");
        String guarantee = option(args, "guarantee", "PEER_PROCESSING_GUARANTEE",
                StreamsConfig.EXACTLY_ONCE_V2);
        int threads = Integer.parseInt(option(args, "threads", "PEER_NUM_STREAM_THREADS", "1"));
        long interval = Long.parseLong(
                option(args, "interval-seconds", "BOXSYNC_COLLAPSE_INTERVAL_SECONDS", "5"));
        double grace = Double.parseDouble(option(args, "grace-seconds", "BOXSYNC_GRACE_SECONDS", "1"));
        double idle = Double.parseDouble(option(args, "idle-seconds", "PEER_IDLE_SECONDS", "3"));
        double maxSeconds = Double.parseDouble(option(args, "max-seconds", "PEER_MAX_SECONDS", "600"));
        String stateDir = option(args, "state-dir", "PEER_STATE_DIR",
                System.getProperty("java.io.tmpdir") + "/boxsync-peer");
        if (!guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2)
                && !guarantee.equals(StreamsConfig.AT_LEAST_ONCE)) {
            fail("--guarantee must be exactly_once_v2 or at_least_once, not " + guarantee);
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.DEFAULT_DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG,
                LogAndContinueExceptionHandler.class);
        // Everything else is Kafka Streams' default (commit interval 100 ms with EOS, 30 s
        // with at-least-once; a 10 MiB record cache; RocksDB stores with changelog topics).

        JsonSerde<Change> changes = new JsonSerde<>(Change.class);
        JsonSerde<WindowState> windows = new JsonSerde<>(WindowState.class);
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), changes)
                        .withTimestampExtractor(new OccurredAt()))
                .groupByKey()
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(interval),
                        Duration.ofMillis(Math.round(grace * 1000))))
                .aggregate(WindowState::new, (task, change, state) -> state.add(change),
                        Materialized.with(Serdes.String(), windows))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((window, state) -> KeyValue.pair(window.key(), update(window, state)))
                .peek((task, value) -> {
                    WINDOWS.incrementAndGet();
                    LAST_EMIT_MS.set(System.currentTimeMillis());
                })
                .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));

        int partitions = partitionCount(bootstrap, input);
        partitionCount(bootstrap, output); // it must exist too: brokers here do not create topics
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicBoolean running = new AtomicBoolean();
        AtomicLong runningSince = new AtomicLong();
        streams.setUncaughtExceptionHandler(e -> {
            failure.compareAndSet(null, e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && running.compareAndSet(false, true)) {
                runningSince.set(System.currentTimeMillis());
                say(Map.of("event", "running"));
            }
        });
        long started = System.currentTimeMillis();
        streams.start();
        boolean timedOut = false;
        double dropped = 0;
        while (true) {
            Thread.sleep(200);
            KafkaStreams.State state = streams.state();
            if (failure.get() != null || state == KafkaStreams.State.ERROR
                    || state == KafkaStreams.State.PENDING_ERROR
                    || state == KafkaStreams.State.NOT_RUNNING) {
                break;
            }
            long now = System.currentTimeMillis();
            if (now - started > maxSeconds * 1000) {
                timedOut = true;
                break;
            }
            long quietSince = Math.max(LAST_RECORD_MS.get(), runningSince.get());
            if (running.get() && now - quietSince >= idle * 1000
                    && caughtUp(streams, input, partitions)) {
                dropped = droppedRecords(streams);
                break;
            }
        }
        streams.close(Duration.ofSeconds(60));
        long first = FIRST_RECORD_MS.get();
        long end = Math.max(LAST_RECORD_MS.get(), LAST_EMIT_MS.get());
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("event", "summary");
        summary.put("records", RECORDS.get());
        summary.put("windows", WINDOWS.get());
        summary.put("wall_seconds", first == 0 ? 0.0 : (end - first) / 1000.0);
        summary.put("first_record_ms", first);
        summary.put("last_record_ms", LAST_RECORD_MS.get());
        summary.put("last_emit_ms", LAST_EMIT_MS.get());
        summary.put("dropped_records", dropped);
        summary.put("guarantee", guarantee);
        summary.put("threads", threads);
        summary.put("application_id", applicationId);
        summary.put("timed_out", timedOut);
        if (failure.get() != null) {
            summary.put("error", String.valueOf(failure.get()));
        }
        say(summary);
        System.exit(failure.get() != null || timedOut ? 1 : 0);
    }

    private static byte[] update(Windowed<String> window, WindowState state) {
        ObjectNode node = JsonSerde.MAPPER.createObjectNode();
        node.put("task_id", window.key());
        node.put("window_start", ISO.format(Instant.ofEpochMilli(window.window().start())));
        node.put("window_end", ISO.format(Instant.ofEpochMilli(window.window().end())));
        Change.Person author = state.effectiveAuthor();
        node.put("author_id", author == null ? null : author.id);
        ArrayNode fields = node.putArray("fields");
        new TreeSet<>(state.fields.keySet()).forEach(fields::add);
        node.put("count", state.count);
        try {
            return JsonSerde.MAPPER.writeValueAsBytes(node);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** True when every input partition's records-lag, as the consumers last saw it, is 0. */
    private static boolean caughtUp(KafkaStreams streams, String input, int partitions) {
        Map<String, Double> lags = new HashMap<>();
        String escaped = input.replace('.', '_'); // client metrics tag topics this way
        for (Map.Entry<MetricName, ? extends Metric> entry : streams.metrics().entrySet()) {
            MetricName name = entry.getKey();
            if (!name.name().equals("records-lag")
                    || !name.group().equals("consumer-fetch-manager-metrics")) {
                continue;
            }
            String topic = name.tags().get("topic");
            String partition = name.tags().get("partition");
            if (partition == null || !(input.equals(topic) || escaped.equals(topic))) {
                continue;
            }
            Object value = entry.getValue().metricValue();
            lags.put(partition, value instanceof Double d ? d : Double.NaN);
        }
        return lags.size() >= partitions && lags.values().stream().allMatch(lag -> lag == 0.0);
    }

    /** Records Kafka Streams skipped (late for a closed window, bad time, undecodable). */
    private static double droppedRecords(KafkaStreams streams) {
        double total = 0;
        for (Map.Entry<MetricName, ? extends Metric> entry : streams.metrics().entrySet()) {
            if (entry.getKey().name().equals("dropped-records-total")
                    && entry.getValue().metricValue() instanceof Double d && !d.isNaN()) {
                total += d;
            }
        }
        return total;
    }

    private static int partitionCount(String bootstrap, String topic) throws Exception {
        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(config)) {
            return admin.describeTopics(List.of(topic)).allTopicNames().get()
                    .get(topic).partitions().size();
        } catch (Exception e) {
            fail("cannot describe the topic " + topic + " at " + bootstrap + ": " + e);
            return 0;
        }
    }

    private static synchronized void say(Map<String, ?> line) {
        try {
            System.out.println(JsonSerde.MAPPER.writeValueAsString(line));
            System.out.flush();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            String arg = argv[i];
            if (arg.equals("--help") || arg.equals("-h")) {
                System.out.println(String.join("\n",
                        "usage: PeerCollapse [--bootstrap HOST:PORT] [--input TOPIC] [--output TOPIC]",
                        "       [--application-id ID] [--guarantee exactly_once_v2|at_least_once]",
                        "       [--threads N] [--interval-seconds S] [--grace-seconds S]",
                        "       [--idle-seconds S] [--max-seconds S] [--state-dir DIR]",
                        "environment: BOXSYNC_KAFKA_BOOTSTRAP, PEER_INPUT_TOPIC, PEER_OUTPUT_TOPIC,",
                        "  PEER_APPLICATION_ID, PEER_PROCESSING_GUARANTEE, PEER_NUM_STREAM_THREADS,",
                        "  BOXSYNC_COLLAPSE_INTERVAL_SECONDS (5), BOXSYNC_GRACE_SECONDS (1),",
                        "  PEER_IDLE_SECONDS (3), PEER_MAX_SECONDS (600), PEER_STATE_DIR"));
                System.exit(0);
            }
            if (!arg.startsWith("--")) {
                fail("unexpected argument " + arg + " (see --help)");
            }
            String name = arg.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else if (i + 1 < argv.length) {
                value = argv[++i];
            } else {
                fail(arg + " needs a value");
                return args;
            }
            args.put(name, value);
        }
        return args;
    }

    private static String option(Map<String, String> args, String name, String env, String fallback) {
        String value = args.remove(name);
        if (value == null) {
            value = System.getenv(env);
        }
        return value == null || value.isEmpty() ? fallback : value;
    }

    private static void fail(String message) {
        System.err.println("boxsync-peer: " + message);
        System.exit(2);
    }
}
