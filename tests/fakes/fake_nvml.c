/* A fake libnvidia-ml.so.1 for nvlow's tests, driven by $NVLOW_FAKE_SCENARIO.
 *
 * Implements every function declared in cdefs/nvml.h; "nvml_cdef.h" is generated at build
 * time from that file, so the fake and the binding cannot drift apart. Symbols are dropped
 * (to mimic an older driver) by the linker version script, not here.
 */
#include <stddef.h>
#include <time.h>
#include "nvml_cdef.h"
#include "fake_common.h"

struct nvmlDevice_st {
    int gpu;
    int slot; /* -1: the GPU itself; else a MIG slot */
};

static struct nvmlDevice_st gpu_handles[FAKE_MAX_GPUS];
static struct nvmlDevice_st mig_handles[FAKE_MAX_GPUS][FAKE_MAX_MIG];
static int init_count;

#define INJECT(gpu) do { int rc_ = fake_injected(__func__, (gpu)); if (rc_) return (nvmlReturn_t)rc_; } while (0)
#define NEED_INIT() do { if (init_count <= 0) return NVML_ERROR_UNINITIALIZED; } while (0)

/* Validate a handle; sets g (and m for MIG handles). */
#define DEVICE(h) \
    NEED_INIT(); \
    if ((h) == NULL || (h)->gpu < 0 || (h)->gpu >= S.ngpus) return NVML_ERROR_INVALID_ARGUMENT; \
    fake_gpu *g = &S.gpus[(h)->gpu]; \
    fake_mig *m = (h)->slot >= 0 ? &g->migs[(h)->slot] : NULL; \
    (void)g; (void)m; \
    INJECT((h)->gpu)

#define OUT_NUM(ptr, value) do { \
    if ((ptr) == NULL) return NVML_ERROR_INVALID_ARGUMENT; \
    if ((value) < 0) return NVML_ERROR_NOT_SUPPORTED; \
    *(ptr) = (__typeof__(*(ptr)))(value); \
    return NVML_SUCCESS; } while (0)

static nvmlReturn_t out_str(char *dst, unsigned int length, const char *src) {
    if (dst == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (*src == '\0') return NVML_ERROR_NOT_SUPPORTED;
    if (length < strlen(src) + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
    fake_strout(dst, length, src);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) {
    fake_load();
    INJECT(-1);
    if (!S.loaded || S.driver[0] == '\0') return NVML_ERROR_DRIVER_NOT_LOADED;
    for (int i = 0; i < FAKE_MAX_GPUS; i++) {
        gpu_handles[i].gpu = i;
        gpu_handles[i].slot = -1;
        for (int j = 0; j < FAKE_MAX_MIG; j++) {
            mig_handles[i][j].gpu = i;
            mig_handles[i][j].slot = j;
        }
    }
    init_count++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    NEED_INIT();
    INJECT(-1);
    init_count--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch ((int)result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    NEED_INIT(); INJECT(-1);
    return out_str(version, length, S.driver);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    NEED_INIT(); INJECT(-1);
    return out_str(version, length, S.nvml);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    NEED_INIT(); INJECT(-1);
    if (S.cuda < 0) return NVML_ERROR_LIBRARY_NOT_FOUND;
    OUT_NUM(cudaDriverVersion, S.cuda);
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    NEED_INIT(); INJECT(-1);
    for (int i = 0; i < S.nprocs; i++) {
        if (S.procs[i].pid == pid) return out_str(name, length, S.procs[i].name);
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    NEED_INIT(); INJECT(-1);
    OUT_NUM(deviceCount, S.ngpus);
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    NEED_INIT();
    INJECT((int)index);
    if (device == NULL || index >= (unsigned int)S.ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpu_handles[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    DEVICE(device);
    return out_str(name, length, m ? m->name : g->name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    DEVICE(device);
    return out_str(uuid, length, m ? m->uuid : g->uuid);
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber) {
    DEVICE(device);
    if (m) return NVML_ERROR_NOT_SUPPORTED;
    OUT_NUM(minorNumber, g->minor);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    DEVICE(device);
    if (pci == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->bus[0] == '\0') return NVML_ERROR_NOT_SUPPORTED;
    unsigned int domain = 0, bus = 0, dev = 0;
    sscanf(g->bus, "%x:%x:%x", &domain, &bus, &dev);
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.0", domain & 0xffff, bus, dev);
    fake_strout(pci->busId, sizeof(pci->busId), g->bus);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = g->pcidevid < 0 ? 0 : (unsigned int)g->pcidevid;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    DEVICE(device);
    if (memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != ((unsigned int)sizeof(nvmlMemory_v2_t) | (2u << 24))) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    long long total = m ? m->memory : g->mem_total;
    long long used = m ? 0 : g->mem_used;
    if (total < 0) return NVML_ERROR_NOT_SUPPORTED;
    if (used < 0) used = 0;
    long long reserved = m ? 0 : g->mem_reserved;
    memory->total = (unsigned long long)total;
    memory->reserved = (unsigned long long)reserved;
    memory->used = (unsigned long long)used;
    memory->free = (unsigned long long)(total - used - reserved);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    DEVICE(device);
    if (memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    long long total = m ? m->memory : g->mem_total;
    long long used = m ? 0 : g->mem_used;
    if (total < 0) return NVML_ERROR_NOT_SUPPORTED;
    if (used < 0) used = 0;
    used += m ? 0 : g->mem_reserved; /* nvmlMemory_t: "used" is reserved plus allocated (nvml.h) */
    memory->total = (unsigned long long)total;
    memory->used = (unsigned long long)used;
    memory->free = (unsigned long long)(total - used);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor) {
    DEVICE(device);
    if (major == NULL || minor == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->cc_major < 0) return NVML_ERROR_NOT_SUPPORTED;
    *major = (int)g->cc_major;
    *minor = (int)g->cc_minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t *type) {
    DEVICE(device);
    OUT_NUM(type, g->brand);
}

nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch) {
    DEVICE(device);
    if (arch == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->arch < 0) return NVML_ERROR_NOT_SUPPORTED;
    *arch = (nvmlDeviceArchitecture_t)g->arch;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode) {
    DEVICE(device);
    OUT_NUM(mode, g->persistence);
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) {
    DEVICE(device);
    if (currentMode == NULL || pendingMode == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (m || g->mig_current < 0) return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = (unsigned int)g->mig_current;
    *pendingMode = (unsigned int)g->mig_pending;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    DEVICE(device);
    if (m) return NVML_ERROR_NOT_SUPPORTED;
    OUT_NUM(count, g->mig_max);
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice) {
    DEVICE(device);
    if (migDevice == NULL || m) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->mig_current != 1) return NVML_ERROR_NOT_SUPPORTED;
    if (index >= FAKE_MAX_MIG || (long long)index >= g->mig_max) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->migs[index].used) return NVML_ERROR_NOT_FOUND;
    *migDevice = &mig_handles[device->gpu][index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    DEVICE(device);
    if (!m) return NVML_ERROR_NOT_SUPPORTED;
    OUT_NUM(id, m->gi);
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
    DEVICE(device);
    if (!m) return NVML_ERROR_NOT_SUPPORTED;
    OUT_NUM(id, m->ci);
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device) {
    DEVICE(migDevice);
    if (device == NULL || !m) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpu_handles[migDevice->gpu];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice) {
    DEVICE(device);
    OUT_NUM(isMigDevice, m ? 1 : 0);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    DEVICE(device);
    OUT_NUM(power, g->power_usage);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit) {
    DEVICE(device);
    OUT_NUM(limit, g->power_limit);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    DEVICE(device);
    OUT_NUM(limit, g->power_limit);
}

nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_t *temperature) {
    DEVICE(device);
    if (temperature == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (temperature->version != ((unsigned int)sizeof(nvmlTemperature_t) | (1u << 24))) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (temperature->sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->temperature < 0) return NVML_ERROR_NOT_SUPPORTED;
    temperature->temperature = (int)g->temperature;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp) {
    DEVICE(device);
    if (sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    OUT_NUM(temp, g->temperature);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    DEVICE(device);
    if (utilization == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->util_gpu < 0) return NVML_ERROR_NOT_SUPPORTED;
    utilization->gpu = (unsigned int)g->util_gpu;
    utilization->memory = (unsigned int)(g->util_mem < 0 ? 0 : g->util_mem);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs) {
    DEVICE(device);
    if (samplingPeriodUs == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *samplingPeriodUs = 167000;
    OUT_NUM(utilization, g->encoder);
}

nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs) {
    DEVICE(device);
    if (samplingPeriodUs == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *samplingPeriodUs = 167000;
    OUT_NUM(utilization, g->decoder);
}

static long long clock_value(fake_gpu *g, nvmlClockType_t type, int max) {
    switch (type) {
    case NVML_CLOCK_GRAPHICS:
    case NVML_CLOCK_SM: return max ? g->max_clock_sm : g->clock_sm;
    case NVML_CLOCK_MEM: return max ? g->max_clock_mem : g->clock_mem;
    default: return -1;
    }
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    DEVICE(device);
    OUT_NUM(clock, clock_value(g, type, 0));
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    DEVICE(device);
    OUT_NUM(clock, clock_value(g, type, 1));
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter, unsigned int *value) {
    DEVICE(device);
    if (S.sample_ms > 0) { /* NVML counts bytes over 20 ms before it answers (nvml.h) */
        struct timespec ts = {S.sample_ms / 1000, (S.sample_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {}
        fake_log_call("nvmlDeviceGetPcieThroughput done");
    }
    OUT_NUM(value, counter == NVML_PCIE_UTIL_RX_BYTES ? g->pcie_rx : g->pcie_tx);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *maxLinkGen) {
    DEVICE(device);
    OUT_NUM(maxLinkGen, g->pcie_gen);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *maxLinkWidth) {
    DEVICE(device);
    OUT_NUM(maxLinkWidth, g->pcie_width);
}

nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t *bar1Memory) {
    DEVICE(device);
    if (bar1Memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->bar1_total < 0) return NVML_ERROR_NOT_SUPPORTED;
    long long used = g->bar1_used < 0 ? 0 : g->bar1_used;
    bar1Memory->bar1Total = (unsigned long long)g->bar1_total;
    bar1Memory->bar1Used = (unsigned long long)used;
    bar1Memory->bar1Free = (unsigned long long)(g->bar1_total - used);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_t *infos) {
    DEVICE(device);
    if (infoCount == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int n = 0;
    for (int i = 0; i < S.nprocs; i++) n += S.procs[i].gpu == device->gpu;
    if (*infoCount < n) {
        *infoCount = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n > 0 && infos == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int k = 0;
    for (int i = 0; i < S.nprocs; i++) {
        if (S.procs[i].gpu != device->gpu) continue;
        infos[k].pid = S.procs[i].pid;
        infos[k].usedGpuMemory = S.procs[i].used < 0 ? ~0ULL : (unsigned long long)S.procs[i].used;
        infos[k].gpuInstanceId = 0xFFFFFFFFu;
        infos[k].computeInstanceId = 0xFFFFFFFFu;
        k++;
    }
    *infoCount = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuTopologyLevel_t *pathInfo) {
    DEVICE(device1);
    if (device2 == NULL || device2->gpu < 0 || device2->gpu >= S.ngpus || pathInfo == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    fake_gpu *g2 = &S.gpus[device2->gpu];
    const fake_link *l = fake_find_link(device1->gpu, device2->gpu);
    if (device1->gpu == device2->gpu) *pathInfo = NVML_TOPOLOGY_INTERNAL;
    else if (l != NULL) *pathInfo = (nvmlGpuTopologyLevel_t)l->level;
    else if (g->numa >= 0 && g->numa == g2->numa) *pathInfo = NVML_TOPOLOGY_NODE;
    else *pathInfo = NVML_TOPOLOGY_SYSTEM;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned int *node) {
    DEVICE(device);
    OUT_NUM(node, g->numa);
}

nvmlReturn_t nvmlDeviceGetCpuAffinity(nvmlDevice_t device, unsigned int cpuSetSize, unsigned long *cpuSet) {
    DEVICE(device);
    if (cpuSet == NULL || cpuSetSize == 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (!g->has_affinity) return NVML_ERROR_NOT_SUPPORTED;
    memset(cpuSet, 0, cpuSetSize * sizeof(unsigned long));
    cpuSet[0] = (unsigned long)g->affinity;
    return NVML_SUCCESS;
}

/* ---- ECC, memory bus, P2P and NVLink (nvidia-docker 1.0's fields) ---- */

nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t *current, nvmlEnableState_t *pending) {
    DEVICE(device);
    if (current == NULL || pending == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->ecc < 0) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = g->ecc ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    return NVML_SUCCESS;
}

/* uncorrected errors per location from the scenario; corrected ones are 0; -1: unsupported */
static long long ecc_count(const fake_gpu *g, nvmlMemoryErrorType_t type, nvmlMemoryLocation_t location) {
    if (g->ecc != 1) return -1;
    if (type == NVML_MEMORY_ERROR_TYPE_CORRECTED) return 0;
    switch (location) {
    case NVML_MEMORY_LOCATION_L1_CACHE: return g->ecc_l1;
    case NVML_MEMORY_LOCATION_L2_CACHE: return g->ecc_l2;
    case NVML_MEMORY_LOCATION_DEVICE_MEMORY: return g->ecc_device;
    default: return 0;
    }
}

nvmlReturn_t nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t device, nvmlMemoryErrorType_t errorType,
                                             nvmlEccCounterType_t counterType, nvmlMemoryLocation_t locationType,
                                             unsigned long long *count) {
    DEVICE(device);
    if ((unsigned)errorType > 1 || (unsigned)counterType > 1 || (unsigned)locationType > 7) return NVML_ERROR_INVALID_ARGUMENT;
    OUT_NUM(count, ecc_count(g, errorType, locationType));
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t errorType,
                                         nvmlEccCounterType_t counterType, unsigned long long *eccCounts) {
    DEVICE(device);
    if ((unsigned)errorType > 1 || (unsigned)counterType > 1) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->ecc != 1) return NVML_ERROR_NOT_SUPPORTED;
    long long total = 0;
    if (errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED) {
        const long long parts[3] = {g->ecc_l1, g->ecc_l2, g->ecc_device};
        for (int i = 0; i < 3; i++) total += parts[i] > 0 ? parts[i] : 0;
    }
    OUT_NUM(eccCounts, total);
}

nvmlReturn_t nvmlDeviceGetMemoryBusWidth(nvmlDevice_t device, unsigned int *busWidth) {
    DEVICE(device);
    OUT_NUM(busWidth, g->buswidth);
}

static int same_bus(const char *x, const char *y) {
    unsigned int d1 = 0, b1 = 0, v1 = 0, d2 = 0, b2 = 0, v2 = 0;
    if (sscanf(x, "%x:%x:%x", &d1, &b1, &v1) != 3 || sscanf(y, "%x:%x:%x", &d2, &b2, &v2) != 3) return 0;
    return d1 == d2 && b1 == b2 && v1 == v2;
}

static int nvlink_total(const fake_gpu *g) {
    int n = g->nvlink_switch + g->nvlink_peers;
    return n > FAKE_MAX_NVLINK ? FAKE_MAX_NVLINK : n;
}

/* NVLinks joining GPUs a and b: straight ones, else both sides' links into the NVSwitch fabric */
static int nvlinks_between(int a, int b) {
    const fake_gpu *ga = &S.gpus[a], *gb = &S.gpus[b];
    int direct = 0, back = 0;
    for (int i = 0; i < ga->nvlink_peers; i++) direct += same_bus(ga->nvlink_peer[i], gb->bus);
    for (int i = 0; i < gb->nvlink_peers; i++) back += same_bus(gb->nvlink_peer[i], ga->bus);
    if (direct || back) return direct > back ? direct : back;
    if (ga->nvlink_switch > 0 && gb->nvlink_switch > 0)
        return ga->nvlink_switch < gb->nvlink_switch ? ga->nvlink_switch : gb->nvlink_switch;
    return 0;
}

nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuP2PCapsIndex_t p2pIndex,
                                    nvmlGpuP2PStatus_t *p2pStatus) {
    DEVICE(device1);
    if (device2 == NULL || device2->gpu < 0 || device2->gpu >= S.ngpus || p2pStatus == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if ((unsigned)p2pIndex >= NVML_P2P_CAPS_INDEX_UNKNOWN || device1->gpu == device2->gpu) return NVML_ERROR_INVALID_ARGUMENT;
    if (m || device2->slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    const fake_link *l = fake_find_link(device1->gpu, device2->gpu);
    int ok = l != NULL && l->p2p;
    if (p2pIndex == NVML_P2P_CAPS_INDEX_NVLINK) ok = ok && nvlinks_between(device1->gpu, device2->gpu) > 0;
    *p2pStatus = ok ? NVML_P2P_STATUS_OK : NVML_P2P_STATUS_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive) {
    DEVICE(device);
    if (isActive == NULL || link >= FAKE_MAX_NVLINK) return NVML_ERROR_INVALID_ARGUMENT;
    if (m || (int)link >= nvlink_total(g)) return NVML_ERROR_NOT_SUPPORTED;
    *isActive = NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci) {
    DEVICE(device);
    if (pci == NULL || link >= FAKE_MAX_NVLINK) return NVML_ERROR_INVALID_ARGUMENT;
    if (m || (int)link >= nvlink_total(g)) return NVML_ERROR_NOT_SUPPORTED;
    char bus[32];
    if ((int)link < g->nvlink_switch) snprintf(bus, sizeof(bus), FAKE_SWITCH_BUS_FMT, FAKE_SWITCH_BUS_BASE + link / 2);
    else snprintf(bus, sizeof(bus), "%s", g->nvlink_peer[link - (unsigned int)g->nvlink_switch]);
    unsigned int domain = 0, b = 0, dev = 0;
    sscanf(bus, "%x:%x:%x", &domain, &b, &dev);
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.0", domain & 0xffff, b, dev);
    fake_strout(pci->busId, sizeof(pci->busId), bus);
    pci->domain = domain;
    pci->bus = b;
    pci->device = dev;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link,
                                                 nvmlIntNvLinkDeviceType_t *pNvLinkDeviceType) {
    DEVICE(device);
    if (pNvLinkDeviceType == NULL || link >= FAKE_MAX_NVLINK) return NVML_ERROR_INVALID_ARGUMENT;
    if (m || (int)link >= nvlink_total(g)) return NVML_ERROR_NOT_SUPPORTED;
    *pNvLinkDeviceType = (int)link < g->nvlink_switch ? NVML_NVLINK_DEVICE_TYPE_SWITCH : NVML_NVLINK_DEVICE_TYPE_GPU;
    return NVML_SUCCESS;
}
