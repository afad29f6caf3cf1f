#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import Synchronization

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
            // macOS may refuse a soft limit above kern.maxfilesperproc however high the hard one
            // is; then vLLM's target, as far as the hard limit allows.
            if setrlimit(resourceKind, &raised) != 0 {
                raised.rlim_cur = min(limit.rlim_max, rlim_t(recommended))
                _ = setrlimit(resourceKind, &raised)
            }
        }
        return current.soft
    }

    /// What to tell the user of a fleet when the limit is below `recommended`, else nil. Pods
    /// in the gateway's process hold the far end of each upstream connection too (three
    /// descriptors per client connection); process pods leave the gateway two.
    public static func warning(soft: Int, podsInThisProcess: Bool) -> String? {
        guard soft < recommended else { return nil }
        let (perConnection, holder) = podsInThisProcess ? (3, "the gateway and its pods share this process") : (2, "the gateway needs two per client connection")
        return "open files are limited to \(soft) (ulimit -n, its hard limit) and \(holder): about "
            + "\(connectionBudget(descriptorsPerConnection: perConnection, soft: soft)) client connections can be open; the gateway closes more as they come"
    }

    // MARK: Running out

    /// Whether an error is this process (or machine) being refused a descriptor: the limit is
    /// this machine's, not a fault of the peer it was connecting to.
    public static func isExhaustion(_ error: any Error) -> Bool {
        if let error = error as? IOError { return [EMFILE, ENFILE].contains(error.errnoCode) }
        if let error = error as? NIOConnectionError {
            // A host name's lookup needs descriptors too.
            return error.connectionErrors.contains { isExhaustion($0.error) }
                || [error.dnsAError, error.dnsAAAAError].contains { $0.map(isExhaustion) ?? false }
        }
        return false
    }

    /// How many times so far this process ran short of descriptors: refused one (accepting or
    /// connecting), or held a listener back to keep its reserve. A long-running command reads it
    /// to say when the machine, not the fleet, shaped what clients saw.
    public static var shortages: Int { shortageCount.load(ordering: .relaxed) }

    public static func noteShortage() { shortageCount.add(1, ordering: .relaxed) }

    private static let shortageCount = Atomic<Int>(0)

    /// How many connections a listener may hold when each takes `descriptorsPerConnection`
    /// descriptors of this process (the client's socket and the upstream's; the pod's side too
    /// when the pods share the process), keeping a reserve for everything else. Running out
    /// altogether does more than refuse connections: the runtime's own threads and timers need
    /// descriptors too.
    public static func connectionBudget(descriptorsPerConnection: Int, soft: Int = current.soft) -> Int {
        max(16, (soft - reserve(soft: soft)) / descriptorsPerConnection)
    }

    /// A tenth of the limit, at least 256: upstream connections can outnumber client ones (a
    /// request finds the idle connections of another event loop's pool unusable and opens its
    /// own; measured under overload: 6,693 upstream for 6,581 client connections), and
    /// listeners, pipes and the runtime's own descriptors come on top.
    static func reserve(soft: Int) -> Int { max(256, soft / 10) }

    private static func clamp(_ value: rlim_t) -> Int { value >= rlim_t(Int.max) ? Int.max : Int(value) }

    #if canImport(Glibc)
    private static let resourceKind = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resourceKind = RLIMIT_NOFILE
    #endif
}
