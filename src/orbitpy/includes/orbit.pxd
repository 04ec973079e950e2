# The C core's API (csrc/orbit.h), as _core.pyx uses it.  orbit.h is the
# reference: its comments say what each call does.

from libc.stdint cimport uint64_t

cdef extern from "orbit.h":
    enum:
        ORBIT_E_CRASHED
        ORBIT_E_TIMEOUT
        ORBIT_E_CLOSED
        ORBIT_E_RESTART_LIMIT
        ORBIT_E_SKIPPED
        ORBIT_E_CANCELLED
        ORBIT_E_REFUSED
        ORBIT_E_ABORTED
        ORBIT_CALL_SKIP_IF_BUSY
        ORBIT_CALL_CANCEL_QUEUED
        ORBIT_CANCEL_KILL
        ORBIT_MAX_CALL_AREAS
        ORBIT_EXIT_RUNNER_RAISED
    struct orbit_area
    struct orbit
    struct orbit_future
    struct c_area_stats "orbit_area_stats":
        size_t size
        size_t used
        size_t allocations
    struct c_orbit_stats "orbit_stats":
        uint64_t calls
        uint64_t pages_copied
        uint64_t pages_reset
        uint64_t bytes_synced
        uint64_t restarts
        uint64_t crashes
        uint64_t full_syncs
        uint64_t crashes_in_row
        uint64_t failed
        uint64_t timeouts
        uint64_t cancelled
    ctypedef long (*orbit_entry)(void *arg, size_t argsize, void *store)
    ctypedef void *(*orbit_init)()
    struct orbit_hooks:
        void (*before_fork)(void *ctx) noexcept
        void (*after_fork_parent)(void *ctx) noexcept
        void (*after_fork_child)(void *ctx) noexcept
        void *(*block_begin)(void *ctx) noexcept
        void (*block_end)(void *ctx, void *state) noexcept
        int (*interrupted)(void *ctx) noexcept
        void *ctx
    struct orbit_options:
        int timeout_ms
        int nice
        uint64_t cpu_mask
        size_t memory_limit
        int harden
        int restart
        int restart_limit
        int backoff_ms
        int max_backoff_ms
        const int *keep_fds
        size_t nkeep_fds
        const orbit_hooks *hooks

    const char *orbit_strerror(int code)
    size_t orbit_page_size()
    const char *orbit_backend_name()
    int orbit_kernel_has_calls()
    orbit_area *orbit_area_create(size_t size, const char *mode)
    void orbit_area_destroy(orbit_area *area)
    int orbit_area_confine_writes(orbit_area *area)
    void *orbit_area_base(const orbit_area *area)
    size_t orbit_area_size(const orbit_area *area)
    const char *orbit_area_mode(const orbit_area *area)
    size_t orbit_reservation_size()
    long orbit_set_background_sync(unsigned ms) nogil
    int orbit_rearm_fault_handler()
    void *orbit_alloc(orbit_area *area, size_t size)
    void orbit_free(orbit_area *area, void *ptr)
    void orbit_area_stats(orbit_area *area, c_area_stats *st)

    void orbit_options_init(orbit_options *o)
    orbit *orbit_create(const char *name, orbit_entry entry, orbit_init init,
                        const orbit_options *opts)
    int orbit_destroy(orbit *ob)
    int orbit_restart(orbit *ob)
    int orbit_warm(orbit *ob, size_t narea, orbit_area **areas)
    int orbit_pid(orbit *ob)
    void orbit_stats(orbit *ob, c_orbit_stats *st)
    orbit_future *orbit_call_async(orbit *ob, int flags, size_t narea,
                                   orbit_area **areas, orbit_entry entry,
                                   const void *arg, size_t argsize)
    ctypedef int (*orbit_check_fn)(void *ctx) noexcept
    orbit_future *orbit_call_async_checked(orbit *ob, int flags, size_t narea,
                                           orbit_area **areas, orbit_entry entry,
                                           const void *arg, size_t argsize,
                                           orbit_check_fn check, void *check_ctx)
    int orbit_future_wait(orbit_future *f, int timeout_ms, long *ret)
    const void *orbit_future_data(orbit_future *f, size_t *len)
    int orbit_future_status(orbit_future *f)
    int orbit_future_pid(orbit_future *f)
    int orbit_future_cause(orbit_future *f)
    int orbit_future_set_timeout(orbit_future *f, int timeout_ms)
    int orbit_future_cancel(orbit_future *f, int flags)
    int orbit_pull(orbit_future *f, int timeout_ms, void **data, size_t *len)
    void orbit_future_release(orbit_future *f)
    int orbit_in_orbit()
    int orbit_return_data(const void *data, size_t len)
    int orbit_push(const void *data, size_t len)
