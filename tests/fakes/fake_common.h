/* Scenario parser shared by the fake libnvidia-ml.so.1 and libcuda.so.1 (test-only).
 *
 * The scenario file is named by $NVLOW_FAKE_SCENARIO and re-read on every nvmlInit_v2 /
 * cuInit / cuDriverGetVersion, so one loaded fake can serve many tests in one process.
 * Format: one "key args..." per line, '#' starts a comment; see tests/fakes/scenario.py.
 */
#ifndef NVLOW_FAKE_COMMON_H
#define NVLOW_FAKE_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_MAX_GPUS 512
#define FAKE_MAX_MIG 8
#define FAKE_MAX_PROCS 2048
#define FAKE_MAX_RC 256
#define FAKE_MAX_LINKS 8192
#define FAKE_MAX_NVLINK 36
#define FAKE_STR 128
/* where a GPU's NVLinks to NVSwitches end (one switch address per link) */
#define FAKE_SWITCH_BUS_FMT "00000000:%02X:00.0"
#define FAKE_SWITCH_BUS_BASE 0xC0

typedef struct {
    int used;
    int gi, ci;
    long long memory;
    char uuid[FAKE_STR];
    char name[FAKE_STR];
} fake_mig;

typedef struct {
    char name[FAKE_STR], uuid[FAKE_STR], bus[FAKE_STR];
    long long minor, pcidevid, brand, arch, cc_major, cc_minor;
    long long mem_total, mem_used, mem_reserved, sm, persistence;
    long long mig_current, mig_pending, mig_max;
    fake_mig migs[FAKE_MAX_MIG];
    long long power_usage, power_limit, temperature, util_gpu, util_mem;
    long long encoder, decoder, clock_sm, clock_mem, max_clock_sm, max_clock_mem;
    long long pcie_gen, pcie_width, pcie_rx, pcie_tx, bar1_total, bar1_used, numa;
    unsigned long long affinity;
    int has_affinity;
    long long ecc, ecc_l1, ecc_l2, ecc_device, sharedmem, constmem, l2cache, memclock, buswidth;
    int nvlink_switch; /* active NVLinks to NVSwitches: links 0..nvlink_switch-1 */
    int nvlink_peers;  /* then this many straight to another GPU */
    char nvlink_peer[FAKE_MAX_NVLINK][32];
} fake_gpu;

/* one GPU pair: "link A B LEVEL P2P" */
typedef struct {
    int a, b;
    int level, p2p;
} fake_link;

typedef struct {
    int gpu;
    unsigned int pid;
    long long used;
    char name[FAKE_STR];
} fake_proc;

typedef struct {
    char fn[FAKE_STR];
    int code;
    int gpu; /* -1: every device */
} fake_rc;

typedef struct {
    int loaded;
    char driver[FAKE_STR], nvml[FAKE_STR];
    long long cuda;
    long long sample_ms; /* nvmlDeviceGetPcieThroughput sleeps this long, as NVML samples for 20 ms */
    int ngpus, nprocs, nrc, nlinks;
    fake_gpu gpus[FAKE_MAX_GPUS];
    fake_proc procs[FAKE_MAX_PROCS];
    fake_rc rcs[FAKE_MAX_RC];
    fake_link links[FAKE_MAX_LINKS];
} fake_scenario;

static fake_scenario S;
static char S_path[1024]; /* the scenario file S was read from */

/* -1 marks "absent": the function then answers NOT_SUPPORTED */
static void fake_gpu_reset(fake_gpu *g) {
    memset(g, 0, sizeof(*g));
    g->minor = g->pcidevid = g->brand = g->arch = g->cc_major = g->cc_minor = -1;
    g->mem_total = g->mem_used = g->sm = g->persistence = -1;
    g->mig_current = g->mig_pending = g->mig_max = -1;
    g->power_usage = g->power_limit = g->temperature = g->util_gpu = g->util_mem = -1;
    g->encoder = g->decoder = g->clock_sm = g->clock_mem = g->max_clock_sm = g->max_clock_mem = -1;
    g->pcie_gen = g->pcie_width = g->pcie_rx = g->pcie_tx = g->bar1_total = g->bar1_used = g->numa = -1;
    g->ecc = g->ecc_l1 = g->ecc_l2 = g->ecc_device = -1;
    g->sharedmem = g->constmem = g->l2cache = g->memclock = g->buswidth = -1;
}

static void fake_copy(char *dst, const char *src) {
    size_t n = strlen(src);
    while (n > 0 && (src[n - 1] == '\n' || src[n - 1] == '\r')) n--;
    if (n >= FAKE_STR) n = FAKE_STR - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* the rest of the line after skipping `skip` whitespace-separated words */
static const char *fake_rest(const char *line, int skip) {
    const char *p = line;
    for (int i = 0; i < skip; i++) {
        while (*p == ' ' || *p == '\t') p++;
        while (*p && *p != ' ' && *p != '\t') p++;
    }
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* Parse $NVLOW_FAKE_SCENARIO; returns 0 on success, -1 when unset or unreadable. */
static int fake_load(void) {
    const char *path = getenv("NVLOW_FAKE_SCENARIO");
    memset(&S, 0, sizeof(S));
    S.cuda = -1;
    snprintf(S_path, sizeof(S_path), "%s", path ? path : "");
    if (path == NULL || *path == '\0') return -1;
    FILE *fh = fopen(path, "r");
    if (fh == NULL) return -1;
    char line[1024], key[64];
    fake_gpu *g = NULL;
    while (fgets(line, sizeof(line), fh) != NULL) {
        if (sscanf(line, "%63s", key) != 1 || key[0] == '#') continue;
        const char *a = fake_rest(line, 1);
        if (!strcmp(key, "driver")) fake_copy(S.driver, a);
        else if (!strcmp(key, "nvml")) fake_copy(S.nvml, a);
        else if (!strcmp(key, "cuda")) S.cuda = atoll(a);
        else if (!strcmp(key, "sample_ms")) S.sample_ms = atoll(a);
        else if (!strcmp(key, "gpu")) {
            if (S.ngpus >= FAKE_MAX_GPUS) break;
            g = &S.gpus[S.ngpus++];
            fake_gpu_reset(g);
        } else if (!strcmp(key, "rc")) {
            if (S.nrc >= FAKE_MAX_RC) continue;
            fake_rc *r = &S.rcs[S.nrc];
            char fn[FAKE_STR];
            int code, gpu = -1;
            int n = sscanf(a, "%127s %d %d", fn, &code, &gpu);
            if (n < 2) continue;
            fake_copy(r->fn, fn);
            r->code = code;
            r->gpu = n == 3 ? gpu : -1;
            S.nrc++;
        } else if (!strcmp(key, "link")) {
            if (S.nlinks >= FAKE_MAX_LINKS) continue;
            fake_link *l = &S.links[S.nlinks];
            if (sscanf(a, "%d %d %d %d", &l->a, &l->b, &l->level, &l->p2p) == 4) S.nlinks++;
        } else if (g == NULL) {
            continue; /* device keys before the first "gpu" line are ignored */
        } else if (!strcmp(key, "name")) fake_copy(g->name, a);
        else if (!strcmp(key, "uuid")) fake_copy(g->uuid, a);
        else if (!strcmp(key, "bus")) fake_copy(g->bus, a);
        else if (!strcmp(key, "minor")) g->minor = atoll(a);
        else if (!strcmp(key, "pcidevid")) g->pcidevid = strtoll(a, NULL, 0);
        else if (!strcmp(key, "brand")) g->brand = atoll(a);
        else if (!strcmp(key, "arch")) g->arch = strtoll(a, NULL, 0);
        else if (!strcmp(key, "cc")) sscanf(a, "%lld %lld", &g->cc_major, &g->cc_minor);
        else if (!strcmp(key, "memory")) sscanf(a, "%lld %lld", &g->mem_total, &g->mem_used);
        else if (!strcmp(key, "reserved")) g->mem_reserved = atoll(a);
        else if (!strcmp(key, "sm")) g->sm = atoll(a);
        else if (!strcmp(key, "persistence")) g->persistence = atoll(a);
        else if (!strcmp(key, "mig")) sscanf(a, "%lld %lld", &g->mig_current, &g->mig_pending);
        else if (!strcmp(key, "migmax")) g->mig_max = atoll(a);
        else if (!strcmp(key, "migdev")) {
            int slot, gi, ci;
            long long mem;
            char uuid[FAKE_STR];
            if (sscanf(a, "%d %d %d %lld %127s", &slot, &gi, &ci, &mem, uuid) != 5) continue;
            if (slot < 0 || slot >= FAKE_MAX_MIG) continue;
            fake_mig *m = &g->migs[slot];
            m->used = 1;
            m->gi = gi;
            m->ci = ci;
            m->memory = mem;
            fake_copy(m->uuid, uuid);
            fake_copy(m->name, fake_rest(a, 5));
        } else if (!strcmp(key, "power")) sscanf(a, "%lld %lld", &g->power_usage, &g->power_limit);
        else if (!strcmp(key, "temperature")) g->temperature = atoll(a);
        else if (!strcmp(key, "util")) sscanf(a, "%lld %lld", &g->util_gpu, &g->util_mem);
        else if (!strcmp(key, "encoder")) g->encoder = atoll(a);
        else if (!strcmp(key, "decoder")) g->decoder = atoll(a);
        else if (!strcmp(key, "clocks")) sscanf(a, "%lld %lld", &g->clock_sm, &g->clock_mem);
        else if (!strcmp(key, "maxclocks")) sscanf(a, "%lld %lld", &g->max_clock_sm, &g->max_clock_mem);
        else if (!strcmp(key, "pcie")) sscanf(a, "%lld %lld", &g->pcie_gen, &g->pcie_width);
        else if (!strcmp(key, "throughput")) sscanf(a, "%lld %lld", &g->pcie_rx, &g->pcie_tx);
        else if (!strcmp(key, "bar1")) sscanf(a, "%lld %lld", &g->bar1_total, &g->bar1_used);
        else if (!strcmp(key, "numa")) g->numa = atoll(a);
        else if (!strcmp(key, "affinity")) { g->affinity = strtoull(a, NULL, 0); g->has_affinity = 1; }
        else if (!strcmp(key, "ecc")) g->ecc = atoll(a);
        else if (!strcmp(key, "eccerrors")) sscanf(a, "%lld %lld %lld", &g->ecc_l1, &g->ecc_l2, &g->ecc_device);
        else if (!strcmp(key, "sharedmem")) g->sharedmem = atoll(a);
        else if (!strcmp(key, "constmem")) g->constmem = atoll(a);
        else if (!strcmp(key, "l2cache")) g->l2cache = atoll(a);
        else if (!strcmp(key, "memclock")) g->memclock = atoll(a);
        else if (!strcmp(key, "buswidth")) g->buswidth = atoll(a);
        else if (!strcmp(key, "nvlink")) {
            int n = atoi(a);
            g->nvlink_switch = n < 0 ? 0 : n > FAKE_MAX_NVLINK ? FAKE_MAX_NVLINK : n;
        } else if (!strcmp(key, "nvlinkpeer")) {
            if (g->nvlink_switch + g->nvlink_peers < FAKE_MAX_NVLINK &&
                sscanf(a, "%31s", g->nvlink_peer[g->nvlink_peers]) == 1) g->nvlink_peers++;
        }
        else if (!strcmp(key, "process")) {
            if (S.nprocs >= FAKE_MAX_PROCS) continue;
            fake_proc *p = &S.procs[S.nprocs];
            if (sscanf(a, "%u %lld", &p->pid, &p->used) != 2) continue;
            p->gpu = S.ngpus - 1;
            fake_copy(p->name, fake_rest(a, 2));
            S.nprocs++;
        }
    }
    fclose(fh);
    S.loaded = 1;
    return 0;
}

/* The "link" line of GPUs a and b (either order), or NULL. */
__attribute__((unused)) static const fake_link *fake_find_link(int a, int b) {
    for (int i = 0; i < S.nlinks; i++) {
        const fake_link *l = &S.links[i];
        if ((l->a == a && l->b == b) || (l->a == b && l->b == a)) return l;
    }
    return NULL;
}

/* True when $NVLOW_FAKE_SCENARIO names another file than the one loaded (a new test). */
__attribute__((unused)) static int fake_changed(void) {
    const char *path = getenv("NVLOW_FAKE_SCENARIO");
    return strcmp(path ? path : "", S_path) != 0;
}

/* Append `fn` to the file named by $NVLOW_FAKE_CALL_LOG (one line per call; tests count
 * nvmlInit_v2 and the other calls a command makes). */
static void fake_log_call(const char *fn) {
    const char *path = getenv("NVLOW_FAKE_CALL_LOG");
    if (path == NULL || *path == '\0') return;
    FILE *fh = fopen(path, "a");
    if (fh == NULL) return;
    fprintf(fh, "%s\n", fn);
    fclose(fh);
}

/* The injected return code for function `fn` on device `gpu` (0 when none); every call of a
 * fake function passes here, so this is where calls are logged. */
static int fake_injected(const char *fn, int gpu) {
    fake_log_call(fn);
    for (int i = 0; i < S.nrc; i++) {
        if (strcmp(S.rcs[i].fn, fn) == 0 && (S.rcs[i].gpu < 0 || S.rcs[i].gpu == gpu)) return S.rcs[i].code;
    }
    return 0;
}

static void fake_strout(char *dst, unsigned int length, const char *src) {
    if (length == 0) return;
    strncpy(dst, src, length - 1);
    dst[length - 1] = '\0';
}

#endif
