/* A fake libcuda.so.1 (CUDA driver API) for nvlow's tests, driven by $NVLOW_FAKE_SCENARIO.
 *
 * Implements every function declared in cdefs/cuda.h ("cuda_cdef.h" is generated from it at
 * build time). CUDA devices are the scenario's GPUs in scenario order.
 */
#include <stddef.h>
#include "cuda_cdef.h"
#include "fake_common.h"

static int initialized;

/* a new scenario file means a new "machine": forget cuInit */
static void sync_scenario(void) {
    if (fake_changed()) {
        fake_load();
        initialized = 0;
    }
}

#define INJECT(dev) do { int rc_ = fake_injected(__func__, (dev)); if (rc_) return (CUresult)rc_; } while (0)
#define DEVICE(dev) \
    sync_scenario(); \
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED; \
    if ((dev) < 0 || (dev) >= S.ngpus) return CUDA_ERROR_INVALID_DEVICE; \
    fake_gpu *g = &S.gpus[(dev)]; (void)g; \
    INJECT(dev)

static const char *names[][3] = {
    {"0", "CUDA_SUCCESS", "no error"},
    {"1", "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {"3", "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {"34", "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {"100", "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {"101", "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {"803", "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {"999", "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult lookup(CUresult error, const char **pStr, int which) {
    if (pStr == NULL) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (atoi(names[i][0]) == (int)error) {
            *pStr = names[i][which];
            return CUDA_SUCCESS;
        }
    }
    *pStr = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **pStr) { return lookup(error, pStr, 2); }
CUresult cuGetErrorName(CUresult error, const char **pStr) { return lookup(error, pStr, 1); }

CUresult cuDriverGetVersion(int *driverVersion) {
    /* works before cuInit, as the real one does */
    sync_scenario();
    if (!S.loaded) fake_load();
    INJECT(-1);
    if (driverVersion == NULL) return CUDA_ERROR_INVALID_VALUE;
    if (S.cuda < 0) return CUDA_ERROR_UNKNOWN;
    *driverVersion = (int)S.cuda;
    return CUDA_SUCCESS;
}

CUresult cuInit(unsigned int Flags) {
    fake_load();
    INJECT(-1);
    if (Flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (!S.loaded || S.driver[0] == '\0') return CUDA_ERROR_UNKNOWN;
    if (S.ngpus == 0) return CUDA_ERROR_NO_DEVICE;
    initialized = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
    sync_scenario();
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    INJECT(-1);
    if (count == NULL) return CUDA_ERROR_INVALID_VALUE;
    *count = S.ngpus;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    sync_scenario();
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    INJECT(ordinal);
    if (device == NULL) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= S.ngpus) return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    DEVICE(dev);
    if (name == NULL || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    fake_strout(name, (unsigned int)len, g->name);
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) {
    DEVICE(dev);
    if (uuid == NULL) return CUDA_ERROR_INVALID_VALUE;
    /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx": 16 bytes of hex after the prefix */
    const char *p = strchr(g->uuid, '-');
    int k = 0;
    memset(uuid->bytes, 0, sizeof(uuid->bytes));
    while (p && *p && k < 16) {
        if (*p == '-') { p++; continue; }
        unsigned int byte;
        if (sscanf(p, "%2x", &byte) != 1) break;
        uuid->bytes[k++] = (char)byte;
        p += 2;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
    DEVICE(dev);
    if (bytes == NULL) return CUDA_ERROR_INVALID_VALUE;
    *bytes = g->mem_total < 0 ? 0 : (size_t)g->mem_total;
    return CUDA_SUCCESS;
}

/* an attribute the scenario leaves out is one this "driver" does not know */
static CUresult attr_value(int *pi, long long value) {
    if (value < 0) return CUDA_ERROR_INVALID_VALUE;
    *pi = (int)value;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev) {
    DEVICE(dev);
    if (pi == NULL) return CUDA_ERROR_INVALID_VALUE;
    unsigned int domain = 0, bus = 0, device = 0;
    sscanf(g->bus, "%x:%x:%x", &domain, &bus, &device);
    switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *pi = (int)g->sm; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *pi = (int)g->cc_major; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *pi = (int)g->cc_minor; break;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: *pi = (int)bus; break;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: *pi = (int)device; break;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: *pi = (int)domain; break;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: *pi = g->ecc == 1; break;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return attr_value(pi, g->constmem);
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return attr_value(pi, g->sharedmem);
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return attr_value(pi, g->l2cache);
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return attr_value(pi, g->memclock);
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return attr_value(pi, g->buswidth);
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetByPCIBusId(CUdevice *dev, const char *pciBusId) {
    sync_scenario();
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    INJECT(-1);
    if (dev == NULL || pciBusId == NULL) return CUDA_ERROR_INVALID_VALUE;
    unsigned int d1 = 0, b1 = 0, v1 = 0;
    if (sscanf(pciBusId, "%x:%x:%x", &d1, &b1, &v1) != 3) return CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < S.ngpus; i++) {
        unsigned int d2 = 0, b2 = 0, v2 = 0;
        if (sscanf(S.gpus[i].bus, "%x:%x:%x", &d2, &b2, &v2) == 3 && d1 == d2 && b1 == b2 && v1 == v2) {
            *dev = i;
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_INVALID_DEVICE;
}

CUresult cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev) {
    DEVICE(dev);
    if (canAccessPeer == NULL) return CUDA_ERROR_INVALID_VALUE;
    if (peerDev < 0 || peerDev >= S.ngpus) return CUDA_ERROR_INVALID_DEVICE;
    const fake_link *l = fake_find_link(dev, peerDev);
    *canAccessPeer = dev != peerDev && l != NULL && l->p2p;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev) {
    DEVICE(dev);
    if (pciBusId == NULL || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    unsigned int domain = 0, bus = 0, device = 0;
    sscanf(g->bus, "%x:%x:%x", &domain, &bus, &device);
    /* CUDA spells the domain with 4 digits, NVML with 8 */
    snprintf(pciBusId, (size_t)len, "%04X:%02X:%02X.0", domain, bus, device);
    return CUDA_SUCCESS;
}
