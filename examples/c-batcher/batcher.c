// A MArk-rs batcher policy in plain C, no libc: "send when a quarter of the max batch is queued or
// the oldest request has used a third of its SLO, else wait 1 ms".
//
// It implements the canonical ABI of `mark:policy/batcher@0.1.0#decide` by hand (see README.md):
// the queue-state record arrives flattened as 9 parameters; the batch-decision variant is returned
// through a pointer to { u8 tag; u64 payload at offset 8 }.
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t batch;     // offset 0
    double latency_us;  // offset 8 (record size 16, align 8)
} profile_point;

// Bump allocator for the host's copies of lists (the profile); reset after every call.
static uint8_t heap[64 * 1024] __attribute__((aligned(16)));
static size_t top;

__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old;
    (void)old_size;
    size_t start = (top + align - 1) & ~(align - 1);
    if (start + new_size > sizeof heap) {
        __builtin_trap();
    }
    top = start + new_size;
    return heap + start;
}

static struct {
    uint8_t tag;  // 0 = send(u32), 1 = wait(u64)
    uint8_t pad[7];
    uint64_t payload;
} answer;

__attribute__((export_name("mark:policy/batcher@0.1.0#decide")))
void *decide(uint32_t queued_items, uint32_t queued_requests, uint64_t oldest_wait_us,
             uint64_t slo_us, double arrival_rate, uint32_t max_batch, uint32_t executors,
             profile_point *profile, uint32_t profile_len) {
    (void)queued_requests;
    (void)arrival_rate;
    (void)executors;
    (void)profile;
    (void)profile_len;
    uint32_t quarter = max_batch / 4 ? max_batch / 4 : 1;
    if (queued_items >= quarter || oldest_wait_us * 3 >= slo_us) {
        answer.tag = 0;
        answer.payload = queued_items < max_batch ? (queued_items ? queued_items : 1) : max_batch;
    } else {
        answer.tag = 1;
        answer.payload = 1000;
    }
    return &answer;
}

__attribute__((export_name("cabi_post_mark:policy/batcher@0.1.0#decide")))
void decide_post_return(void *ret) {
    (void)ret;
    top = 0;
}
