import InferenceAPI
import Logging
import NIOConcurrencyHelpers

/// GIE's endpoint picker (the EPP) for one pool, as the data plane calls it: the director over
/// the datastore's candidates. Shared by every event loop; the director's state (prefix index,
/// round-robin position, random draws) sits behind one lock held only while it decides.
public final class EndpointPicker: Sendable {
    public let pool: InferencePool
    public let datastore: Datastore
    public let metrics: GatewayMetrics
    private let director: NIOLockedValueBox<Director>
    /// False emulates the picker being unreachable: requests then follow the pool's failureMode.
    private let reachable = NIOLockedValueBox(true)
    /// Each refusal at info, each decision at debug (GIE's EPP logs its decisions at a debug verbosity).
    private let logger: Logger
    /// GIE's `destination-endpoint-served-verifier` is configured: responses name the endpoint the
    /// data plane says served them, in `x-conformance-test-served-endpoint`.
    public let verifiesServedEndpoint: Bool
    /// How much of a request's prefix text the prefix scorer reads (0: it has none).
    public let prefixTextLimit: Int

    public init(pool: InferencePool, director: Director, datastore: Datastore, metrics: GatewayMetrics, logger: Logger) {
        self.logger = logger
        self.pool = pool
        self.datastore = datastore
        self.metrics = metrics
        self.director = NIOLockedValueBox(director)
        verifiesServedEndpoint = director.resources.pickerConfig?.plugins.contains { $0.type == "destination-endpoint-served-verifier" } ?? false
        prefixTextLimit = director.scheduler.prefixIndex?.hasher.textLimit ?? 0
    }

    public var isReachable: Bool {
        get { reachable.withLockedValue { $0 } }
        set { reachable.withLockedValue { $0 = newValue } }
    }

    /// Where an inference request goes. `subset` is the `x-gateway-destination-endpoint-subset`
    /// hint; `excluding` the endpoints a retry must avoid.
    func decide(_ request: InferenceRequest, subset: Set<String>?, excluding: Set<String> = []) -> RoutingDecision {
        guard isReachable else { return failureModeDecision(request.model, excluding: excluding) }
        let now = datastore.now
        var candidates = datastore.candidates(now: now)
        if let subset {
            candidates.removeAll { !subset.contains($0.endpoint.address) }
            if candidates.isEmpty {
                return .reject(status: 503, code: "ServiceUnavailable", message: "failed to find endpoint candidates for serving the request")
            }
        }
        if !excluding.isEmpty { candidates.removeAll { excluding.contains($0.endpoint.address) } }
        let started = ContinuousClock.now
        let (decision, scheduled) = director.withLockedValue { director in
            (director.decide(request, candidates: candidates, now: now), director.lastDecisionScheduled)
        }
        if scheduled { metrics.observeScheduling(started.duration(to: .now), decision: decision, namespace: pool.namespace) }
        switch decision {
        case .route(let endpoints, let target, let client, let priority):
            logger.debug("picked \(endpoints.first?.address ?? "-") for model \(client) (target \(target), priority \(priority)) among \(candidates.count) candidates; fallbacks \(endpoints.dropFirst().map(\.address))")
        case .reject(let status, let code, let message):
            noteRefusal(status: status, code: code, message: message, model: request.model)
        }
        return decision
    }

    /// A request the gateway answered itself, refusing it: logged at info.
    func noteRefusal(status: Int, code: String, message: String, model: String?) {
        logger.info("refused \(status) \(code) (model \(model ?? "none")): \(message)")
    }

    /// The data plane reports where it sent a request (ext_proc's
    /// `x-gateway-destination-endpoint-served`) and what came back.
    func noteServed(_ address: String, status: Int) {
        logger.debug("served by \(address): \(status)")
    }

    /// A request without an inference body (a GET, or another path): GIE sends it to a random
    /// candidate.
    func pickAny(excluding: Set<String> = []) -> Endpoint? {
        let candidates = isReachable ? datastore.candidates(now: datastore.now).map(\.endpoint) : datastore.readyEndpoints()
        return candidates.filter { !excluding.contains($0.address) }.randomElement()
    }

    /// The pool's saturation as the picker's detector sees it now (≥ 1 saturated).
    public func saturation() -> Double {
        let now = datastore.now
        let candidates = datastore.candidates(now: now)
        return director.withLockedValue { $0.scheduler.saturation(candidates, now: now) }
    }

    /// The data plane could not reach an endpoint.
    func reportConnectFailure(_ address: String) {
        datastore.reportConnectFailure(address)
    }

    /// An endpoint answered (or the gateway timed it out: 504).
    func reportAnswer(_ address: String, status: Int) {
        datastore.reportAnswer(address, status: status)
    }

    /// The picker is down: FailOpen forwards the request unchanged to a Ready endpoint of the
    /// gateway's choosing; FailClose drops it with 500, Envoy's reply when an ext_proc server
    /// fails and `failure_mode_allow` is off.
    private func failureModeDecision(_ model: String?, excluding: Set<String>) -> RoutingDecision {
        switch pool.failureMode {
        case .failClose:
            return .reject(status: 500, code: "Internal", message: "endpoint picker unavailable and the pool's failureMode is FailClose")
        case .failOpen:
            guard let endpoint = datastore.readyEndpoints().filter({ !excluding.contains($0.address) }).randomElement() else {
                return .reject(status: 503, code: "ServiceUnavailable", message: "no healthy endpoints in pool \(pool.name)")
            }
            return .route(endpoints: [endpoint], targetModel: model ?? "", clientModel: model ?? "", priority: 0)
        }
    }
}
