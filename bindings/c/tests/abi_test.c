/*
 * Exercises every function of factlog.h, every status a C program can
 * provoke, and the rules the header states (zero-copy views, NULL handling,
 * thread-local error messages, handles outliving the store). Run by
 * tests/c_abi.rs under valgrind; by hand:
 *
 *   cargo build --release -p factlog-c
 *   cc -std=c11 -Wall -Wextra -Werror -pthread -Ibindings/c/include bindings/c/tests/abi_test.c \
 *      target/release/libfactlog_c.a -lpthread -ldl -lm -o /tmp/abi_test
 *   /tmp/abi_test "$(mktemp -d)"
 *
 * Prints "N passed, 0 failed" and exits 0 when every check holds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "factlog.h"

static int passed, failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) {                                                              \
            passed++;                                                            \
        } else {                                                                 \
            failed++;                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

/* The call must return `want`; for an error, the message must contain `needle` (or NULL). */
#define EXPECT(call, want, needle) expect_status((call), (want), (needle), #call, __LINE__)

static void expect_status(factlog_status got, factlog_status want, const char *needle, const char *call, int line) {
    const char *msg = factlog_last_error_message();
    if (got != want) {
        failed++;
        fprintf(stderr, "abi_test.c:%d: %s returned %s, expected %s (last error: %s)\n", line, call,
                factlog_status_name(got), factlog_status_name(want), msg);
        return;
    }
    if (needle != NULL && strstr(msg, needle) == NULL) {
        failed++;
        fprintf(stderr, "abi_test.c:%d: %s: message \"%s\" does not mention \"%s\"\n", line, call, msg, needle);
        return;
    }
    passed++;
}

static char base[512];

static const char *path_in(const char *name) {
    static char buf[4][640];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", base, name);
    return p;
}

static void write_file(const char *path, const void *bytes, size_t len, off_t offset) {
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(pwrite(fd, bytes, len, offset) == (ssize_t)len);
    close(fd);
}

static factlog_new_event event(const char *type, const char *data) {
    factlog_new_event ev;
    memset(&ev, 0, sizeof ev);
    factlog_event_id_new(ev.event_id);
    ev.event_type = type;
    ev.event_version = 1;
    ev.occurred_at = factlog_now_nanos();
    ev.data = (const uint8_t *)data;
    ev.data_len = strlen(data);
    return ev;
}

static int view_is(const factlog_event_view *v, const char *type, const char *data) {
    return v->event_type_len == strlen(type) && memcmp(v->event_type, type, v->event_type_len) == 0 &&
           v->data_len == strlen(data) && memcmp(v->data, data, v->data_len) == 0;
}

static factlog_options small_options(void) {
    factlog_options o;
    EXPECT(factlog_options_default(&o), FACTLOG_OK, NULL);
    o.segment_bytes = 1 << 20;
    o.first_segment_bytes = 64 << 10;
    o.max_event_bytes = 4096;
    return o;
}

static void test_helpers(void) {
    CHECK(strcmp(factlog_last_error_message(), "") == 0);
    CHECK(strcmp(factlog_status_name(FACTLOG_OK), "FACTLOG_OK") == 0);
    CHECK(strcmp(factlog_status_name(FACTLOG_NO_SPACE), "FACTLOG_NO_SPACE") == 0);
    CHECK(strcmp(factlog_status_name(999), "FACTLOG_UNKNOWN_STATUS") == 0);
    uint8_t a[FACTLOG_ID_BYTES], b[FACTLOG_ID_BYTES];
    EXPECT(factlog_event_id_new(a), FACTLOG_OK, NULL);
    EXPECT(factlog_event_id_new(b), FACTLOG_OK, NULL);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK((a[6] >> 4) == 7); /* UUID version 7 */
    EXPECT(factlog_event_id_new(NULL), FACTLOG_NULL_POINTER, "id is NULL");
    CHECK(factlog_now_nanos() > 1600000000LL * 1000000000LL);
    factlog_options o;
    EXPECT(factlog_options_default(NULL), FACTLOG_NULL_POINTER, "options");
    EXPECT(factlog_options_default(&o), FACTLOG_OK, NULL);
    CHECK(o.segment_bytes == 64u << 20 && o.max_batch_events == 10000 && !o.read_only);
    CHECK(o.durability == FACTLOG_DURABILITY_SYNC && o.snapshots_keep == 1 && o.lock_wait_ms == 0);
}

static void test_open_errors(void) {
    factlog_store *store = (factlog_store *)&store; /* must be reset to NULL on failure */
    factlog_options o = small_options();
    EXPECT(factlog_open(NULL, &o, &store), FACTLOG_NULL_POINTER, "path is NULL");
    EXPECT(factlog_open(path_in("x"), &o, NULL), FACTLOG_NULL_POINTER, "store is NULL");
    EXPECT(factlog_open("/tmp/\xff\xfe", &o, &store), FACTLOG_INVALID_UTF8, "path is not valid UTF-8");
    CHECK(store == NULL);
    factlog_options bad = o;
    bad.durability = 7;
    EXPECT(factlog_open(path_in("x"), &bad, &store), FACTLOG_OUT_OF_RANGE, "durability 7");
    bad = o;
    bad.segment_bytes = 1000;
    EXPECT(factlog_open(path_in("x"), &bad, &store), FACTLOG_INVALID_OPTIONS, "segment_bytes 1000");
    CHECK(store == NULL);

    mkdir(path_in("junk"), 0755);
    write_file(path_in("junk/notes.txt"), "hello", 5, 0);
    EXPECT(factlog_open(path_in("junk"), &o, &store), FACTLOG_NOT_A_STORE, "junk");
    EXPECT(factlog_open(path_in("junk/notes.txt/store"), &o, &store), FACTLOG_IO, "notes.txt");
    mkdir(path_in("future"), 0755);
    const char *marker = "factlog store\nformat 9\n";
    write_file(path_in("future/FACTLOG"), marker, strlen(marker), 0);
    EXPECT(factlog_open(path_in("future"), &o, &store), FACTLOG_UNSUPPORTED_FORMAT, "format version 9");
    factlog_options ro = o;
    ro.read_only = true;
    EXPECT(factlog_open(path_in("missing"), &ro, &store), FACTLOG_NOT_A_STORE, "missing");
    CHECK(store == NULL);
    EXPECT(factlog_close(NULL), FACTLOG_OK, NULL);
}

static const uint8_t cause[FACTLOG_ID_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t corr[FACTLOG_ID_BYTES] = {16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};

static void test_append(factlog_store *store) {
    factlog_append_result r;
    factlog_new_event opened = event("AccountOpened", "{\"owner\":\"ada\"}");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_NO_STREAM, 0, &opened, 1, &r), FACTLOG_OK, NULL);
    CHECK(r.first_version == 0 && r.last_version == 0 && r.first_position == 0 && r.last_position == 0);
    CHECK(!r.deduplicated && !r.snapshot_due);

    factlog_new_event batch[2] = {event("FundsDeposited", "{\"amount\":100}"), event("FundsWithdrawn", "{\"amount\":30}")};
    batch[0].has_causation_id = true;
    memcpy(batch[0].causation_id, cause, sizeof cause);
    batch[0].has_correlation_id = true;
    memcpy(batch[0].correlation_id, corr, sizeof corr);
    batch[0].metadata = (const uint8_t *)"{\"user\":\"ada\"}";
    batch[0].metadata_len = strlen("{\"user\":\"ada\"}");
    batch[0].occurred_at = 1234567890123LL;
    batch[1].event_version = 2;
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_EXACT, 0, batch, 2, &r), FACTLOG_OK, NULL);
    CHECK(r.first_version == 1 && r.last_version == 2 && r.first_position == 1 && r.last_position == 2);
    /* The same batch again is an idempotent retry. */
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_EXACT, 0, batch, 2, &r), FACTLOG_OK, NULL);
    CHECK(r.deduplicated && r.first_position == 1 && r.last_version == 2);

    factlog_new_event late = event("FundsDeposited", "{\"amount\":5}");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_EXACT, 0, &late, 1, &r), FACTLOG_WRONG_EXPECTED_VERSION,
           "aggregate \"acct-1\": expected 0, actual 2");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_NO_STREAM, 0, &late, 1, &r),
           FACTLOG_WRONG_EXPECTED_VERSION, "expected no stream");
    EXPECT(factlog_append(store, "acct-2", FACTLOG_EXPECTED_STREAM_EXISTS, 0, &late, 1, &r),
           FACTLOG_WRONG_EXPECTED_VERSION, "actual no stream");
    EXPECT(factlog_append(store, "acct-2", FACTLOG_EXPECTED_ANY, 0, &opened, 1, &r), FACTLOG_DUPLICATE_EVENT_ID,
           "already stored at position 0 (aggregate \"acct-1\")");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &late, 0, &r), FACTLOG_INVALID_INPUT,
           "empty batch for aggregate \"acct-1\"");
    EXPECT(factlog_append(store, "", FACTLOG_EXPECTED_ANY, 0, &late, 1, &r), FACTLOG_INVALID_INPUT, NULL);
    factlog_new_event untyped = event("", "{}");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &untyped, 1, &r), FACTLOG_INVALID_INPUT,
           "event 0");
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    factlog_new_event large = event("Big", big);
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &large, 1, &r), FACTLOG_EVENT_TOO_LARGE,
           "over the limit of 4096 bytes");

    /* Argument checks: nothing is written. */
    EXPECT(factlog_append(NULL, "acct-1", FACTLOG_EXPECTED_ANY, 0, &late, 1, &r), FACTLOG_NULL_POINTER, "store");
    EXPECT(factlog_append(store, NULL, FACTLOG_EXPECTED_ANY, 0, &late, 1, &r), FACTLOG_NULL_POINTER, "aggregate_id");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, NULL, 1, &r), FACTLOG_NULL_POINTER, "events");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &late, SIZE_MAX, &r), FACTLOG_OUT_OF_RANGE,
           "events length");
    EXPECT(factlog_append(store, "acct-1", 9, 0, &late, 1, &r), FACTLOG_OUT_OF_RANGE, "expected-version kind 9");
    EXPECT(factlog_append(store, "acct-\xc3", FACTLOG_EXPECTED_ANY, 0, &late, 1, &r), FACTLOG_INVALID_UTF8,
           "aggregate_id is not valid UTF-8");
    factlog_new_event bad = late;
    bad.event_type = NULL;
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &bad, 1, &r), FACTLOG_NULL_POINTER,
           "events[0].event_type is NULL");
    bad.event_type = "Bad\xff";
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &bad, 1, &r), FACTLOG_INVALID_UTF8,
           "events[0].event_type");
    bad = late;
    bad.data = NULL;
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &bad, 1, &r), FACTLOG_NULL_POINTER,
           "events[0].data is NULL");
    bad = late;
    bad.metadata_len = SIZE_MAX;
    bad.metadata = (const uint8_t *)"m";
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_ANY, 0, &bad, 1, &r), FACTLOG_OUT_OF_RANGE,
           "events[0].metadata length");
    /* Empty data may be NULL; a NULL result is allowed. */
    factlog_new_event empty = event("Pinged", "");
    empty.data = NULL;
    EXPECT(factlog_append(store, "ping", FACTLOG_EXPECTED_ANY, 0, &empty, 1, NULL), FACTLOG_OK, NULL);
}

/* factlog_append_many, on a store of its own: all parts or none. */
static void test_append_many(void) {
    factlog_options o = small_options();
    factlog_store *store = NULL;
    EXPECT(factlog_open(path_in("many"), &o, &store), FACTLOG_OK, NULL);
    factlog_new_event opened = event("AccountOpened", "{}");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_NO_STREAM, 0, &opened, 1, NULL), FACTLOG_OK, NULL);

    /* A transfer: both sides in one atomic batch. */
    factlog_new_event out[2] = {event("FundsWithdrawn", "{\"amount\":30}"), event("FeeCharged", "{\"amount\":1}")};
    factlog_new_event in = event("FundsDeposited", "{\"amount\":30}");
    factlog_append_part parts[2] = {
        {"acct-1", FACTLOG_EXPECTED_EXACT, 0, out, 2},
        {"acct-2", FACTLOG_EXPECTED_NO_STREAM, 0, &in, 1},
    };
    factlog_append_result r[2];
    memset(r, 0xff, sizeof r);
    EXPECT(factlog_append_many(store, parts, 2, r), FACTLOG_OK, NULL);
    CHECK(r[0].first_version == 1 && r[0].last_version == 2 && r[0].first_position == 1 && r[0].last_position == 2);
    CHECK(r[1].first_version == 0 && r[1].last_version == 0 && r[1].first_position == 3 && r[1].last_position == 3);
    CHECK(!r[0].deduplicated && !r[1].deduplicated && !r[0].snapshot_due);
    /* The same call again is an idempotent retry. */
    EXPECT(factlog_append_many(store, parts, 2, r), FACTLOG_OK, NULL);
    CHECK(r[0].deduplicated && r[1].deduplicated && r[1].last_position == 3);

    /* One stale expectation: nothing is written, and the message names that aggregate. */
    factlog_new_event more = event("FundsDeposited", "{\"amount\":5}");
    factlog_new_event other = event("FundsDeposited", "{\"amount\":6}");
    factlog_append_part stale[2] = {
        {"acct-3", FACTLOG_EXPECTED_NO_STREAM, 0, &more, 1},
        {"acct-2", FACTLOG_EXPECTED_EXACT, 7, &other, 1},
    };
    EXPECT(factlog_append_many(store, stale, 2, NULL), FACTLOG_WRONG_EXPECTED_VERSION,
           "aggregate \"acct-2\": expected 7, actual 0");
    factlog_iter *it = NULL;
    factlog_event_view v;
    EXPECT(factlog_read_aggregate(store, "acct-3", 0, FACTLOG_DIRECTION_FORWARD, &it), FACTLOG_OK, NULL);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_END, NULL);
    factlog_iter_free(it);
    stale[1].expected_version = 0;
    EXPECT(factlog_append_many(store, stale, 2, NULL), FACTLOG_OK, NULL); /* NULL results are allowed */
    EXPECT(factlog_read_all(store, 4, &it), FACTLOG_OK, NULL);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_OK, NULL);
    CHECK(v.position == 4 && v.aggregate_id_len == 6 && memcmp(v.aggregate_id, "acct-3", 6) == 0);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_OK, NULL);
    CHECK(v.position == 5 && v.version == 1 && view_is(&v, "FundsDeposited", "{\"amount\":6}"));
    EXPECT(factlog_iter_next(it, &v), FACTLOG_END, NULL);
    factlog_iter_free(it);

    /* Argument and input checks: nothing is written. */
    factlog_new_event late = event("FundsDeposited", "{}");
    factlog_append_part twice[2] = {
        {"acct-4", FACTLOG_EXPECTED_ANY, 0, &late, 1},
        {"acct-4", FACTLOG_EXPECTED_ANY, 0, &more, 1},
    };
    EXPECT(factlog_append_many(store, twice, 2, NULL), FACTLOG_INVALID_INPUT, "appears twice");
    EXPECT(factlog_append_many(store, NULL, 0, NULL), FACTLOG_INVALID_INPUT, "no batches");
    EXPECT(factlog_append_many(NULL, parts, 2, r), FACTLOG_NULL_POINTER, "store");
    EXPECT(factlog_append_many(store, NULL, 2, r), FACTLOG_NULL_POINTER, "parts");
    EXPECT(factlog_append_many(store, parts, SIZE_MAX, NULL), FACTLOG_OUT_OF_RANGE, "parts length");
    factlog_append_part bad = {"acct-4", FACTLOG_EXPECTED_ANY, 0, &late, 0};
    EXPECT(factlog_append_many(store, &bad, 1, NULL), FACTLOG_INVALID_INPUT, "empty batch for aggregate \"acct-4\"");
    bad.events_len = 1;
    bad.expected_kind = 9;
    EXPECT(factlog_append_many(store, &bad, 1, NULL), FACTLOG_OUT_OF_RANGE, "parts[0]: expected-version kind 9");
    bad.expected_kind = FACTLOG_EXPECTED_ANY;
    bad.aggregate_id = NULL;
    EXPECT(factlog_append_many(store, &bad, 1, NULL), FACTLOG_NULL_POINTER, "parts[0].aggregate_id is NULL");
    bad.aggregate_id = "acct-4";
    bad.events = NULL;
    EXPECT(factlog_append_many(store, &bad, 1, NULL), FACTLOG_NULL_POINTER, "parts[0].events is NULL");
    factlog_new_event untyped = late;
    untyped.event_type = "Bad\xff";
    factlog_append_part bad_event[2] = {
        {"acct-4", FACTLOG_EXPECTED_ANY, 0, &late, 1},
        {"acct-5", FACTLOG_EXPECTED_ANY, 0, &untyped, 1},
    };
    EXPECT(factlog_append_many(store, bad_event, 2, NULL), FACTLOG_INVALID_UTF8, "parts[1].events[0].event_type");
    factlog_store_stats stats;
    EXPECT(factlog_stats(store, &stats), FACTLOG_OK, NULL);
    CHECK(stats.events == 6);
    EXPECT(factlog_close(store), FACTLOG_OK, NULL);
}

static void test_reads(factlog_store *store) {
    factlog_iter *it = NULL;
    factlog_event_view v;
    EXPECT(factlog_read_aggregate(store, "acct-1", 0, FACTLOG_DIRECTION_FORWARD, &it), FACTLOG_OK, NULL);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_OK, NULL);
    CHECK(v.version == 0 && v.position == 0 && view_is(&v, "AccountOpened", "{\"owner\":\"ada\"}"));
    CHECK(v.aggregate_id_len == 6 && memcmp(v.aggregate_id, "acct-1", 6) == 0);
    CHECK(!v.has_causation_id && !v.has_correlation_id && v.metadata_len == 0 && v.metadata == NULL);
    CHECK(v.recorded_at > 0);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_OK, NULL);
    CHECK(v.version == 1 && v.position == 1 && view_is(&v, "FundsDeposited", "{\"amount\":100}"));
    CHECK(v.has_causation_id && memcmp(v.causation_id, cause, sizeof cause) == 0);
    CHECK(v.has_correlation_id && memcmp(v.correlation_id, corr, sizeof corr) == 0);
    CHECK(v.metadata_len == 14 && memcmp(v.metadata, "{\"user\":\"ada\"}", 14) == 0);
    CHECK(v.occurred_at == 1234567890123LL && v.event_version == 1);
    const uint8_t *mapped = v.data;
    EXPECT(factlog_iter_next(it, &v), FACTLOG_OK, NULL);
    CHECK(v.version == 2 && v.event_version == 2 && view_is(&v, "FundsWithdrawn", "{\"amount\":30}"));
    EXPECT(factlog_iter_next(it, &v), FACTLOG_END, NULL);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_END, NULL);
    EXPECT(factlog_iter_next(it, NULL), FACTLOG_NULL_POINTER, "event is NULL");
    EXPECT(factlog_iter_next(NULL, &v), FACTLOG_NULL_POINTER, "iter is NULL");
    factlog_iter_free(it);

    /* Backwards from the end; and zero-copy: another iterator sees the same mapped bytes. */
    EXPECT(factlog_read_aggregate(store, "acct-1", UINT64_MAX, FACTLOG_DIRECTION_BACKWARD, &it), FACTLOG_OK, NULL);
    uint64_t expect_version = 2;
    factlog_status st;
    while ((st = factlog_iter_next(it, &v)) == FACTLOG_OK) {
        CHECK(v.version == expect_version);
        if (v.version == 1) CHECK(v.data == mapped);
        expect_version--;
    }
    CHECK(st == FACTLOG_END && expect_version == UINT64_MAX);
    factlog_iter_free(it);

    EXPECT(factlog_read_aggregate(store, "nobody", 0, FACTLOG_DIRECTION_FORWARD, &it), FACTLOG_OK, NULL);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_END, NULL);
    factlog_iter_free(it);
    it = (factlog_iter *)&it;
    EXPECT(factlog_read_aggregate(store, "acct-1", 0, 5, &it), FACTLOG_OUT_OF_RANGE, "direction 5");
    CHECK(it == NULL);
    EXPECT(factlog_read_aggregate(store, "acct-1", 0, FACTLOG_DIRECTION_FORWARD, NULL), FACTLOG_NULL_POINTER, "iter");
    EXPECT(factlog_read_aggregate(NULL, "acct-1", 0, FACTLOG_DIRECTION_FORWARD, &it), FACTLOG_NULL_POINTER, "store");
    EXPECT(factlog_read_aggregate(store, NULL, 0, FACTLOG_DIRECTION_FORWARD, &it), FACTLOG_NULL_POINTER,
           "aggregate_id");

    /* The whole log, from a position. */
    EXPECT(factlog_read_all(store, 0, &it), FACTLOG_OK, NULL);
    uint64_t n = 0;
    while ((st = factlog_iter_next(it, &v)) == FACTLOG_OK) {
        CHECK(v.position == n);
        n++;
    }
    CHECK(st == FACTLOG_END && n == 4);
    CHECK(v.position == 3 && v.data_len == 0 && v.data == NULL); /* the last one: an empty payload */
    factlog_iter_free(it);
    EXPECT(factlog_read_all(store, 2, &it), FACTLOG_OK, NULL);
    EXPECT(factlog_iter_next(it, &v), FACTLOG_OK, NULL);
    CHECK(v.position == 2 && v.data != mapped);
    factlog_iter_free(it);
    EXPECT(factlog_read_all(store, 0, NULL), FACTLOG_NULL_POINTER, "iter");
    EXPECT(factlog_read_all(NULL, 0, &it), FACTLOG_NULL_POINTER, "store");
    factlog_iter_free(NULL);
}

static void test_snapshots(factlog_store *store) {
    factlog_snapshot_info info;
    const char *state = "{\"balance\":70}";
    EXPECT(factlog_save_snapshot(store, "acct-1", 2, 3, (const uint8_t *)state, strlen(state), &info), FACTLOG_OK,
           NULL);
    CHECK(info.raw_bytes == strlen(state) && info.stored_bytes > 0 && info.payload_bytes > 0);
    EXPECT(factlog_save_snapshot(store, "acct-1", 99, 3, (const uint8_t *)state, strlen(state), &info),
           FACTLOG_SNAPSHOT_AHEAD, "snapshot of aggregate \"acct-1\" at version 99 refused: the aggregate is at 2");
    EXPECT(factlog_save_snapshot(store, "acct-1", 2, 3, NULL, 5, NULL), FACTLOG_NULL_POINTER, "state is NULL");
    EXPECT(factlog_save_snapshot(store, NULL, 2, 3, NULL, 0, NULL), FACTLOG_NULL_POINTER, "aggregate_id");

    factlog_loaded l;
    factlog_iter *events = NULL;
    factlog_event_view v;
    EXPECT(factlog_load(store, "acct-1", &l, &events), FACTLOG_OK, NULL);
    CHECK(l.has_snapshot && l.snapshot_version == 2 && l.snapshot_schema_version == 3 && l.snapshot_taken_at > 0);
    CHECK(l.state_len == strlen(state) && memcmp(l.state, state, l.state_len) == 0);
    CHECK(l.has_version && l.version == 2);
    EXPECT(factlog_iter_next(events, &v), FACTLOG_END, NULL);
    factlog_iter_free(events);

    factlog_new_event more = event("FundsDeposited", "{\"amount\":7}");
    EXPECT(factlog_append(store, "acct-1", FACTLOG_EXPECTED_EXACT, 2, &more, 1, NULL), FACTLOG_OK, NULL);
    EXPECT(factlog_load(store, "acct-1", &l, &events), FACTLOG_OK, NULL);
    CHECK(l.has_snapshot && l.snapshot_version == 2 && l.version == 3);
    EXPECT(factlog_iter_next(events, &v), FACTLOG_OK, NULL);
    CHECK(v.version == 3 && view_is(&v, "FundsDeposited", "{\"amount\":7}"));
    CHECK(memcmp(l.state, state, l.state_len) == 0); /* still valid: the iterator lives */
    EXPECT(factlog_iter_next(events, &v), FACTLOG_END, NULL);
    factlog_iter_free(events);

    /* As of version 1: no snapshot that old, events 0..=1. */
    EXPECT(factlog_load_as_of(store, "acct-1", FACTLOG_AS_OF_VERSION, 1, &l, &events), FACTLOG_OK, NULL);
    CHECK(!l.has_snapshot && l.state_len == 0 && l.state == NULL && l.has_version && l.version == 1);
    int count = 0;
    while (factlog_iter_next(events, &v) == FACTLOG_OK) count++;
    CHECK(count == 2);
    factlog_iter_free(events);
    /* As of position 2 (acct-1's version 2): the snapshot, nothing after it. */
    EXPECT(factlog_load_as_of(store, "acct-1", FACTLOG_AS_OF_POSITION, 2, &l, &events), FACTLOG_OK, NULL);
    CHECK(l.has_snapshot && l.version == 2);
    EXPECT(factlog_iter_next(events, &v), FACTLOG_END, NULL);
    factlog_iter_free(events);
    EXPECT(factlog_load_as_of(store, "acct-1", FACTLOG_AS_OF_RECORDED_AT, factlog_now_nanos(), &l, &events),
           FACTLOG_OK, NULL);
    CHECK(l.has_snapshot && l.version == 3);
    factlog_iter_free(events);
    EXPECT(factlog_load_as_of(store, "acct-1", FACTLOG_AS_OF_RECORDED_AT, 0, &l, &events), FACTLOG_OK, NULL);
    CHECK(!l.has_snapshot && !l.has_version);
    EXPECT(factlog_iter_next(events, &v), FACTLOG_END, NULL);
    factlog_iter_free(events);
    events = (factlog_iter *)&events;
    EXPECT(factlog_load_as_of(store, "acct-1", 9, 0, &l, &events), FACTLOG_OUT_OF_RANGE, "as-of kind 9");
    CHECK(events == NULL);
    EXPECT(factlog_load_as_of(store, "acct-1", FACTLOG_AS_OF_VERSION, -1, &l, &events), FACTLOG_OUT_OF_RANGE,
           "negative");
    EXPECT(factlog_load(store, "acct-1", NULL, &events), FACTLOG_NULL_POINTER, "loaded is NULL");
    EXPECT(factlog_load(store, "acct-1", &l, NULL), FACTLOG_NULL_POINTER, "events is NULL");
    EXPECT(factlog_load(NULL, "acct-1", &l, &events), FACTLOG_NULL_POINTER, "store is NULL");

    EXPECT(factlog_load(store, "nobody", &l, &events), FACTLOG_OK, NULL);
    CHECK(!l.has_snapshot && !l.has_version);
    EXPECT(factlog_iter_next(events, &v), FACTLOG_END, NULL);
    factlog_iter_free(events);
}

static void test_stats_verify_sync(factlog_store *store) {
    factlog_store_stats s;
    EXPECT(factlog_stats(store, &s), FACTLOG_OK, NULL);
    CHECK(s.events == 5 && s.aggregates == 2 && s.segments == 1 && s.snapshots == 1 && s.fsyncs > 0);
    CHECK(s.log_bytes > 64 && s.segment_file_bytes >= s.log_bytes);
    EXPECT(factlog_stats(store, NULL), FACTLOG_NULL_POINTER, "stats is NULL");
    EXPECT(factlog_stats(NULL, &s), FACTLOG_NULL_POINTER, "store is NULL");
    factlog_verify_report rep;
    EXPECT(factlog_verify(store, &rep), FACTLOG_OK, NULL);
    CHECK(rep.events == 5 && rep.problems == 0 && rep.segments == 1 && rep.snapshots == 1);
    EXPECT(factlog_verify(store, NULL), FACTLOG_NULL_POINTER, "report is NULL");
    EXPECT(factlog_verify(NULL, &rep), FACTLOG_NULL_POINTER, "store is NULL");
    EXPECT(factlog_sync(store), FACTLOG_OK, NULL);
    EXPECT(factlog_sync(NULL), FACTLOG_NULL_POINTER, "store is NULL");
}

/* A thread's failures set its own message, never another thread's. */
static void *fail_in_thread(void *arg) {
    (void)arg;
    factlog_status st = factlog_event_id_new(NULL);
    int ok = st == FACTLOG_NULL_POINTER && strstr(factlog_last_error_message(), "id is NULL") != NULL;
    return ok ? (void *)1 : NULL;
}

struct appender {
    factlog_store *store;
    int thread;
    int ok;
};

static void *append_many(void *arg) {
    struct appender *a = arg;
    char id[32];
    snprintf(id, sizeof id, "thread-%d", a->thread);
    for (int i = 0; i < 25; i++) {
        factlog_new_event ev = event("Ticked", "{}");
        a->ok += factlog_append(a->store, id, FACTLOG_EXPECTED_ANY, 0, &ev, 1, NULL) == FACTLOG_OK;
    }
    return NULL;
}

static void test_threads(factlog_store *store) {
    pthread_t t[4];
    struct appender a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct appender){store, i, 0};
        pthread_create(&t[i], NULL, append_many, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(a[i].ok == 25);
    }
    EXPECT(factlog_open(NULL, NULL, NULL), FACTLOG_NULL_POINTER, "store is NULL");
    pthread_t other;
    void *result = NULL;
    pthread_create(&other, NULL, fail_in_thread, NULL);
    pthread_join(other, &result);
    CHECK(result != NULL);
    CHECK(strstr(factlog_last_error_message(), "store is NULL") != NULL);
}

struct delayed {
    factlog_store *store;
};

static void *append_later(void *arg) {
    struct delayed *d = arg;
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    factlog_new_event ev = event("FundsDeposited", "{\"amount\":9}");
    factlog_append(d->store, "acct-9", FACTLOG_EXPECTED_ANY, 0, &ev, 1, NULL);
    return NULL;
}

static void test_subscriptions(factlog_store *store, factlog_subscription **live) {
    const char *types[] = {"FundsDeposited"};
    const char *prefixes[] = {"acct-"};
    factlog_subscription *sub = NULL;
    factlog_event_view v;
    EXPECT(factlog_subscribe(store, FACTLOG_START_BEGINNING, 0, types, 1, prefixes, 1, &sub), FACTLOG_OK, NULL);
    EXPECT(factlog_subscription_next(sub, 1000, &v), FACTLOG_OK, NULL);
    CHECK(v.position == 1 && view_is(&v, "FundsDeposited", "{\"amount\":100}"));
    EXPECT(factlog_subscription_next(sub, 1000, &v), FACTLOG_OK, NULL);
    CHECK(v.version == 3 && view_is(&v, "FundsDeposited", "{\"amount\":7}"));
    EXPECT(factlog_subscription_next(sub, 0, &v), FACTLOG_TIMEOUT, NULL);
    uint64_t position = 0;
    EXPECT(factlog_subscription_position(sub, &position), FACTLOG_OK, NULL);
    CHECK(position == 105);
    /* A live event, appended by another thread while this one waits. */
    pthread_t t;
    struct delayed d = {store};
    pthread_create(&t, NULL, append_later, &d);
    EXPECT(factlog_subscription_next(sub, 60000, &v), FACTLOG_OK, NULL);
    CHECK(v.position == 105 && v.aggregate_id_len == 6 && memcmp(v.aggregate_id, "acct-9", 6) == 0);
    CHECK(v.metadata_len == 0 && v.metadata == NULL && v.data_len == 12);
    pthread_join(t, NULL);
    EXPECT(factlog_subscription_position(sub, NULL), FACTLOG_NULL_POINTER, "position is NULL");
    EXPECT(factlog_subscription_position(NULL, &position), FACTLOG_NULL_POINTER, "subscription is NULL");
    EXPECT(factlog_subscription_next(sub, 0, NULL), FACTLOG_NULL_POINTER, "event is NULL");
    EXPECT(factlog_subscription_next(NULL, 0, &v), FACTLOG_NULL_POINTER, "subscription is NULL");
    *live = sub;

    EXPECT(factlog_subscribe_aggregate(store, "acct-1", FACTLOG_START_AT, 2, &sub), FACTLOG_OK, NULL);
    EXPECT(factlog_subscription_next(sub, 1000, &v), FACTLOG_OK, NULL);
    CHECK(v.version == 2 && view_is(&v, "FundsWithdrawn", "{\"amount\":30}"));
    EXPECT(factlog_subscription_position(sub, &position), FACTLOG_OK, NULL);
    CHECK(position == 3);
    factlog_subscription_free(sub);
    EXPECT(factlog_subscribe_aggregate(store, "acct-1", FACTLOG_START_END, 0, &sub), FACTLOG_OK, NULL);
    EXPECT(factlog_subscription_next(sub, 0, &v), FACTLOG_TIMEOUT, NULL);
    factlog_subscription_free(sub);
    factlog_subscription_free(NULL);

    sub = (factlog_subscription *)&sub;
    EXPECT(factlog_subscribe(store, 7, 0, NULL, 0, NULL, 0, &sub), FACTLOG_OUT_OF_RANGE, "start 7");
    CHECK(sub == NULL);
    EXPECT(factlog_subscribe(store, FACTLOG_START_END, 0, NULL, 1, NULL, 0, &sub), FACTLOG_NULL_POINTER,
           "event_types is NULL");
    const char *holes[] = {"A", NULL};
    EXPECT(factlog_subscribe(store, FACTLOG_START_END, 0, NULL, 0, holes, 2, &sub), FACTLOG_NULL_POINTER,
           "aggregate_prefixes[1] is NULL");
    const char *bad[] = {"\xe2\x82"};
    EXPECT(factlog_subscribe(store, FACTLOG_START_END, 0, bad, 1, NULL, 0, &sub), FACTLOG_INVALID_UTF8,
           "event_types[0]");
    EXPECT(factlog_subscribe(store, FACTLOG_START_END, 0, NULL, 0, NULL, 0, NULL), FACTLOG_NULL_POINTER,
           "subscription is NULL");
    EXPECT(factlog_subscribe(NULL, FACTLOG_START_END, 0, NULL, 0, NULL, 0, &sub), FACTLOG_NULL_POINTER, "store");
    EXPECT(factlog_subscribe_aggregate(store, NULL, FACTLOG_START_END, 0, &sub), FACTLOG_NULL_POINTER,
           "aggregate_id");
    EXPECT(factlog_subscribe_aggregate(store, "a", 3, 0, &sub), FACTLOG_OUT_OF_RANGE, "start 3");
}

static void test_read_only_and_after_close(const char *dir, factlog_subscription *live, factlog_iter *kept) {
    factlog_options o = small_options();
    /* The close released the writer's lock, though an iterator and a subscription live on. */
    factlog_store *rw = NULL;
    EXPECT(factlog_open(dir, &o, &rw), FACTLOG_OK, NULL);
    EXPECT(factlog_close(rw), FACTLOG_OK, NULL);
    o.read_only = true;
    factlog_store *ro = NULL;
    EXPECT(factlog_open(dir, &o, &ro), FACTLOG_OK, NULL);
    factlog_new_event ev = event("FundsDeposited", "{}");
    EXPECT(factlog_append(ro, "acct-1", FACTLOG_EXPECTED_ANY, 0, &ev, 1, NULL), FACTLOG_READ_ONLY, "read-only");
    EXPECT(factlog_save_snapshot(ro, "acct-1", 0, 1, NULL, 0, NULL), FACTLOG_READ_ONLY, "read-only");
    EXPECT(factlog_sync(ro), FACTLOG_READ_ONLY, "read-only");
    factlog_store_stats s;
    EXPECT(factlog_stats(ro, &s), FACTLOG_OK, NULL);
    CHECK(s.events == 106);
    EXPECT(factlog_close(ro), FACTLOG_OK, NULL);

    /* After the store's close: the subscription ends, an iterator made before reads on. */
    factlog_event_view v;
    EXPECT(factlog_subscription_next(live, 1000, &v), FACTLOG_CLOSED, "closed");
    factlog_subscription_free(live);
    int n = 0;
    while (factlog_iter_next(kept, &v) == FACTLOG_OK) n++;
    CHECK(n == 106);
    factlog_iter_free(kept);
}

static void test_corruption(void) {
    factlog_options o = small_options();
    factlog_store *store = NULL;
    const char *dir = path_in("damaged");
    EXPECT(factlog_open(dir, &o, &store), FACTLOG_OK, NULL);
    for (int i = 0; i < 3; i++) {
        factlog_new_event ev = event("Noted", "{\"n\":1}");
        EXPECT(factlog_append(store, "note", FACTLOG_EXPECTED_ANY, 0, &ev, 1, NULL), FACTLOG_OK, NULL);
    }
    /* Flip a byte of the first frame's body under the open store: verify finds it. */
    char seg[700];
    snprintf(seg, sizeof seg, "%s/00000000000000000000.seg", dir);
    write_file(seg, "\x5a\x5a", 2, 64 + 40);
    factlog_verify_report rep;
    EXPECT(factlog_verify(store, &rep), FACTLOG_CORRUPT, "00000000000000000000.seg at offset 64");
    CHECK(rep.problems >= 1 && rep.segments == 1);
    EXPECT(factlog_close(store), FACTLOG_OK, NULL);
    /* A damaged segment header fails the open, naming the file and the offset. */
    write_file(seg, "XACTLOG", 7, 0);
    EXPECT(factlog_open(dir, &o, &store), FACTLOG_CORRUPT, "00000000000000000000.seg at offset 0");
    CHECK(store == NULL);
}

/* FACTLOG_NO_SPACE needs a full file system: a small tmpfs, mounted in a
 * mount namespace of this process only (as root; skipped otherwise). */
static void test_no_space(void) {
    const char *dir = path_in("tiny");
    mkdir(dir, 0755);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=96k") != 0) {
        printf("abi_test: FACTLOG_NO_SPACE not checked (needs root to mount a small tmpfs)\n");
        return;
    }
    factlog_options o = small_options();
    o.prepare_next_segment = false;
    factlog_store *store = NULL;
    EXPECT(factlog_open(dir, &o, &store), FACTLOG_OK, NULL);
    static char payload[2000];
    memset(payload, 'n', sizeof payload - 1);
    factlog_status st = FACTLOG_OK;
    for (int i = 0; i < 200 && st == FACTLOG_OK; i++) {
        factlog_new_event ev = event("Filled", payload);
        st = factlog_append(store, "fill", FACTLOG_EXPECTED_ANY, 0, &ev, 1, NULL);
    }
    EXPECT(st, FACTLOG_NO_SPACE, "no space left while writing");
    EXPECT(factlog_close(store), FACTLOG_OK, NULL);
    umount(dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s EMPTY_SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(base, sizeof base, "%s", argv[1]);
    test_helpers();
    test_open_errors();

    const char *dir = path_in("bank");
    factlog_options o = small_options();
    factlog_store *store = NULL, *again = NULL;
    EXPECT(factlog_open(dir, &o, &store), FACTLOG_OK, NULL);
    EXPECT(factlog_open(dir, &o, &again), FACTLOG_LOCKED, "is locked by another Store in this process");
    CHECK(again == NULL);
    test_append(store);
    test_append_many();
    test_reads(store);
    test_snapshots(store);
    test_stats_verify_sync(store);
    test_threads(store);
    factlog_subscription *live = NULL;
    test_subscriptions(store, &live);
    factlog_iter *kept = NULL;
    EXPECT(factlog_read_all(store, 0, &kept), FACTLOG_OK, NULL);
    EXPECT(factlog_close(store), FACTLOG_OK, NULL);
    test_read_only_and_after_close(dir, live, kept);
    test_corruption();
    test_no_space();

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
