import InferenceAPI

/// A request as the director sees it: only what routing depends on.
public struct InferenceRequest: Sendable {
    /// The body's `model`; nil when missing.
    public var model: String?
    /// `x-gateway-inference-objective`: the InferenceObjective (by name) that sets the priority.
    public var objectiveHeader: String?
    /// `x-gateway-model-name-rewrite`: a target model chosen by the client side.
    public var modelRewriteHeader: String?
    /// The text prefix caching is judged on.
    public var prefixText: String
    /// The text's block hashes, when made ahead (for the model they name).
    public var prefixHashes: PrefixHashes?
    /// `test-epp-endpoint-selection`, for GIE's conformance filter.
    public var endpointSelection: String?

    public init(
        model: String?, objectiveHeader: String? = nil, modelRewriteHeader: String? = nil, prefixText: String = "", prefixHashes: PrefixHashes? = nil,
        endpointSelection: String? = nil
    ) {
        self.model = model
        self.objectiveHeader = objectiveHeader
        self.modelRewriteHeader = modelRewriteHeader
        self.prefixText = prefixText
        self.prefixHashes = prefixHashes
        self.endpointSelection = endpointSelection
    }
}

/// What to do with a request.
public enum RoutingDecision: Sendable, Equatable {
    /// Send it to `endpoints[0]` (the rest are fallbacks) with the body's model set to
    /// `targetModel`; responses name `clientModel` again.
    case route(endpoints: [Endpoint], targetModel: String, clientModel: String, priority: Int)
    /// Refuse it, as GIE's EPP refuses: 400 bad body, 429 shed or nothing fits, 503 no endpoints.
    case reject(status: Int, code: String, message: String)
}

/// GIE's request pipeline for one pool, independent of any transport (the built-in proxy and an
/// Envoy ext_proc front end both call it): model → objective and priority → target-model
/// split → admission (shedding) → scheduling. Pure: the caller passes candidates and the time.
public struct Director: Sendable {
    public let resources: GatewayResources
    public let pool: InferencePool
    public private(set) var scheduler: Scheduler
    private var generator: SplitMix64
    /// Whether the last decision reached the scheduler (GIE times and counts only those as
    /// scheduling attempts; refusals before it are not).
    public private(set) var lastDecisionScheduled = false

    public init(resources: GatewayResources, pool: InferencePool, scheduler: Scheduler, seed: UInt64 = 0) {
        self.resources = resources
        self.pool = pool
        self.scheduler = scheduler
        self.generator = SplitMix64(seed: seed ^ 0x5EED)
    }

    public mutating func decide(_ request: InferenceRequest, candidates: [Candidate], now: Double) -> RoutingDecision {
        lastDecisionScheduled = false
        guard let clientModel = request.model, !clientModel.isEmpty else {
            return .reject(status: 400, code: "BadRequest", message: "model not found in request body")
        }
        // v1alpha2 InferenceModels (GIE ≤ v0.5) give a model its criticality. A model none of
        // them names is served as Sheddable, as v0.5's director does ("No associated
        // inferenceModel found, using default"); v1.x, with no InferenceModels, passes every
        // model at priority 0. The model server answers for a model it does not have.
        let models = resources.models.filter { $0.poolName == pool.name }
        let inferenceModel = models.first { $0.modelName == clientModel }
        // Priority: the named InferenceObjective, else the InferenceModel's criticality, else 0.
        var priority = 0
        if let objectiveName = request.objectiveHeader,
           let objective = resources.objectives.first(where: { $0.name == objectiveName && $0.poolName == pool.name }) {
            priority = objective.priority ?? 0
        } else if let criticality = inferenceModel?.criticality {
            priority = Self.priority(of: criticality)
        } else if !models.isEmpty, inferenceModel == nil {
            priority = Self.priority(of: .sheddable)
        }
        // Target model: the rewrite header, else a rewrite rule's or the InferenceModel's weighted split.
        var targetModel = clientModel
        if let header = request.modelRewriteHeader, !header.isEmpty {
            targetModel = header
        } else if let rule = rewriteRule(for: clientModel), let target = draw(rule.targets) {
            targetModel = target
        } else if let targets = inferenceModel?.targetModels, let target = draw(targets) {
            targetModel = target
        }
        guard !candidates.isEmpty else {
            return .reject(status: 503, code: "ServiceUnavailable", message: "no healthy endpoints in pool \(pool.name)")
        }
        // GIE's legacy admission: sheddable (negative priority) requests wait for no one when saturated.
        if priority < 0, scheduler.saturation(candidates, now: now) >= 1 {
            return .reject(status: 429, code: "ResourceExhausted", message: "system saturated, sheddable request dropped")
        }
        let schedulingRequest = SchedulingRequest(
            targetModel: targetModel, prefixText: request.prefixText, prefixHashes: request.prefixHashes, priority: priority,
            endpointSelection: request.endpointSelection)
        lastDecisionScheduled = true
        guard let endpoints = scheduler.schedule(schedulingRequest, candidates: candidates, now: now) else {
            return .reject(status: 429, code: "ResourceExhausted", message: "failed to find target endpoint")
        }
        return .route(endpoints: endpoints, targetModel: targetModel, clientModel: clientModel, priority: priority)
    }

    /// Criticality as a priority: Critical above the default, Sheddable below zero.
    static func priority(of criticality: Criticality) -> Int {
        switch criticality {
        case .critical: 1
        case .standard: 0
        case .sheddable: -1
        }
    }

    /// The rewrite rule for a model: an exact match beats a catch-all rule, then the oldest
    /// object, then the first rule in its list (GIE v1.5.0's precedence).
    func rewriteRule(for model: String) -> InferenceModelRewrite.Rule? {
        let rewrites = resources.rewrites.filter { $0.poolName == pool.name }.sorted { $0.order < $1.order }
        for rewrite in rewrites {
            if let rule = rewrite.rules.first(where: { $0.matches.contains(model) }) { return rule }
        }
        for rewrite in rewrites {
            if let rule = rewrite.rules.first(where: { $0.matches.isEmpty }) { return rule }
        }
        return nil
    }

    /// A weighted random target: weight/Σweights each, equal shares when none is weighted.
    mutating func draw(_ targets: [WeightedTarget]) -> String? {
        guard !targets.isEmpty else { return nil }
        let weights = targets.map { Double($0.weight ?? 1) }
        var point = generator.nextUnit() * weights.reduce(0, +)
        for (target, weight) in zip(targets, weights) {
            point -= weight
            if point <= 0 { return target.model }
        }
        return targets.last?.model
    }
}
