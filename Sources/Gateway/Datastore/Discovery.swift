/// A pod as the Kubernetes API reports it to the gateway: its name, address, labels and Ready
/// condition.
public struct DiscoveredPod: Sendable, Equatable {
    public var name: String
    /// The pod IP (or host name).
    public var ip: String
    public var labels: [String: String]
    public var ready: Bool
    /// Where the pool's target ports are on this pod, in their order, when they differ from the
    /// target ports themselves: emulated pods share one address and get a port each.
    public var ports: [Int]?

    public init(name: String, ip: String, labels: [String: String], ready: Bool, ports: [Int]? = nil) {
        self.name = name
        self.ip = ip
        self.labels = labels
        self.ready = ready
        self.ports = ports
    }
}

/// Where the gateway learns its pods, as a Kubernetes list + watch: the full set first, then
/// the full set again after every change. The fleet manager's registry is one.
public protocol PodSource: Sendable {
    /// Calls `onChange` with every pod the source knows, at once and after each change, until
    /// the task is cancelled.
    func watch(_ onChange: @escaping @Sendable ([DiscoveredPod]) -> Void) async throws
}

extension InferencePool {
    /// Whether the pool's selector matches a pod's labels (every `matchLabels` entry present).
    public func selects(_ labels: [String: String]) -> Bool {
        selector.allSatisfy { labels[$0.key] == $0.value }
    }

    /// The pool's endpoints among `pods`: one per selected pod and target port, named as GIE
    /// names data-parallel ranks (`<pod>-rank-<i>`) when there are several ports.
    public func endpoints(from pods: [DiscoveredPod]) -> [DiscoveredEndpoint] {
        pods.filter { selects($0.labels) }.flatMap { pod in
            (pod.ports ?? targetPorts).prefix(targetPorts.count).enumerated().map { rank, port in
                DiscoveredEndpoint(
                    endpoint: Endpoint(address: "\(pod.ip):\(port)", podName: targetPorts.count > 1 ? "\(pod.name)-rank-\(rank)" : pod.name),
                    labels: pod.labels, ready: pod.ready)
            }
        }
    }

    /// Endpoints from `--endpoints`: `host:port` as given, and a bare host expanded over the
    /// pool's target ports.
    public func endpoints(fromList list: [String]) -> [DiscoveredEndpoint] {
        list.flatMap { item -> [DiscoveredEndpoint] in
            if UpstreamPool.split(item) != nil {
                return [DiscoveredEndpoint(endpoint: Endpoint(address: item, podName: item))]
            }
            return endpoints(from: [DiscoveredPod(name: item, ip: item, labels: selector, ready: true)])
        }
    }
}
