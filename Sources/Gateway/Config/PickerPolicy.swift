/// How the gateway picks endpoints, by name, for comparisons (`understudy up|sim --policy`):
/// the configured EndpointPickerConfig, or a whole-policy baseline in its place.
public enum PickerPolicy: String, Sendable, CaseIterable {
    /// The EndpointPickerConfig the resources give, else GIE v1.5.0's default profile (queue 2,
    /// KV cache 2, prefix cache 3, max-score picker).
    case `default`
    /// GIE's original scheduler (v0.1–v0.3, in use when the extension launched): the legacy
    /// filter tree, then a random pick among what is left.
    case legacy
    /// Each request to the next endpoint in turn (a Service with kube-proxy in IPVS mode, whose
    /// default scheduler is round-robin).
    case roundRobin = "round-robin"
    /// A uniformly random endpoint per request: a Kubernetes Service, as GIE's launch benchmark
    /// compared against (kube-proxy in iptables mode picks a backend at random per connection,
    /// and LPG opens one connection per request).
    case service
    /// The endpoint with the fewest running + waiting requests, as last scraped.
    case leastRequest = "least-request"

    /// The picker configuration this policy runs, given the one configured.
    public func pickerConfig(configured: EndpointPickerConfig?) -> EndpointPickerConfig {
        switch self {
        case .default: return configured ?? .default
        case .legacy: return Self.single(["decision-tree-filter", "random-picker"])
        case .roundRobin: return Self.single(["round-robin-picker"])
        case .service: return Self.single(["random-picker"])
        case .leastRequest: return Self.single(["least-request-picker"])
        }
    }

    /// One profile running these plugin types, in order, with their default parameters.
    private static func single(_ types: [String]) -> EndpointPickerConfig {
        var config = EndpointPickerConfig()
        config.plugins = types.map { EndpointPickerConfig.Plugin(name: $0, type: $0, parameters: nil) }
        config.profiles = [EndpointPickerConfig.Profile(name: "default", plugins: types.map { .init(pluginRef: $0, weight: nil) })]
        return config.resolved()
    }

    /// "default, legacy, round-robin, …" for help texts and errors.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
