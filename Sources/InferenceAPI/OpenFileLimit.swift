#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit (`ulimit -n`). Every connection is a file, and a whole stack in
/// one process holds three per request in flight (client → gateway, gateway → pod, the pod's
/// side), so the usual soft limit of 1,024 ends a demo at a few hundred requests in flight.
public enum OpenFileLimit {
    /// vLLM raises its soft limit to this at start (`vllm.utils.set_ulimit`, vLLM 0.11.0) and
    /// warns when it cannot; below it, servers here warn too.
    public static let recommended = 65_535

    /// The soft limit now, and the hard limit above which it cannot go.
    public static var current: (soft: Int, hard: Int) {
        var limit = rlimit()
        guard getrlimit(resourceKind, &limit) == 0 else { return (0, 0) }
        return (clamp(limit.rlim_cur), clamp(limit.rlim_max))
    }

    /// Raises the soft limit as far as the hard limit allows (as Go's runtime does for GIE's
    /// endpoint picker), never lowering it; returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(resourceKind, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            // macOS refuses a soft limit above OPEN_MAX however high the hard one is.
            if setrlimit(resourceKind, &raised) != 0 {
                raised.rlim_cur = min(limit.rlim_max, rlim_t(recommended))
                _ = setrlimit(resourceKind, &raised)
            }
        }
        return current.soft
    }

    /// What to tell the user of a whole stack in one process when the limit is below
    /// `recommended`, else nil.
    public static func warning(soft: Int) -> String? {
        guard soft < recommended else { return nil }
        return "open files are limited to \(soft) (ulimit -n, its hard limit): with the gateway and its pods in one process, about "
            + "\(soft / 3) requests can be in flight before connections are refused"
    }

    private static func clamp(_ value: rlim_t) -> Int { value >= rlim_t(Int.max) ? Int.max : Int(value) }

    #if canImport(Glibc)
    private static let resourceKind = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resourceKind = RLIMIT_NOFILE
    #endif
}
