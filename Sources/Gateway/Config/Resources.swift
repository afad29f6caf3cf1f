/// What the gateway reads from GIE's Kubernetes resources, whatever API version they came in.
/// Field rules and defaults are the CRDs' (reference/gie-crds/).

/// What to do when the endpoint picker itself fails (`endpointPickerRef.failureMode`).
public enum FailureMode: String, Sendable, Equatable {
    /// "Forward the request to an endpoint of its picking."
    case failOpen = "FailOpen"
    /// "Drop the request." The CRD default.
    case failClose = "FailClose"
}

/// An InferencePool: which labelled pods on which ports serve the pool.
public struct InferencePool: Sendable, Equatable {
    public var name: String
    public var namespace: String
    /// `inference.networking.k8s.io/v1` or the older `inference.networking.x-k8s.io/v1alpha2`.
    public var apiVersion: String
    /// `spec.selector.matchLabels` (v1) or `spec.selector` (v1alpha2): all must match.
    public var selector: [String: String]
    /// One endpoint per pod and port (`targetPorts`, or v1alpha2's single `targetPortNumber`).
    public var targetPorts: [Int]
    /// `http` (HTTP/1.1, default) or `kubernetes.io/h2c`.
    public var appProtocol: String
    /// The endpoint picker Service (`endpointPickerRef`, or v1alpha2's `extensionRef`).
    public var endpointPickerName: String?
    public var endpointPickerPort: Int?
    public var failureMode: FailureMode
}

/// How much a request may be shed, from an InferenceModel's `criticality` (v1alpha2).
public enum Criticality: String, Sendable, Equatable {
    case critical = "Critical"
    case standard = "Standard"
    case sheddable = "Sheddable"
}

/// An InferenceModel (v1alpha2, up to GIE v0.5): a client-facing model name, its criticality
/// and an optional weighted split over target models.
public struct InferenceModel: Sendable, Equatable {
    public var name: String
    public var namespace: String
    public var modelName: String
    /// Unset counts as Standard.
    public var criticality: Criticality?
    public var targetModels: [WeightedTarget]
    public var poolName: String
}

/// A model and its relative weight in a split (weight/Σweights of the rule's share).
public struct WeightedTarget: Sendable, Equatable {
    public var model: String
    /// Nil when no target of the list sets a weight (the CRD: all or none); equal shares then.
    public var weight: Int?
}

/// An InferenceObjective (v1alpha2, GIE v1.0–v1.5): a priority, chosen per request by the
/// `x-gateway-inference-objective` header naming the object.
public struct InferenceObjective: Sendable, Equatable {
    public var name: String
    public var namespace: String
    /// Higher is more important; negative means sheddable; unset counts as 0.
    public var priority: Int?
    public var poolName: String
}

/// An InferenceModelRewrite (v1alpha2, GIE v1.2–v1.5): rules that rewrite a request's model to
/// weighted targets.
public struct InferenceModelRewrite: Sendable, Equatable {
    public var name: String
    public var namespace: String
    public var poolName: String
    public var rules: [Rule]
    /// Position in the files read; the oldest object wins ties, and file order stands for age.
    public var order: Int

    public struct Rule: Sendable, Equatable {
        /// Exact model names this rule matches; empty matches every model.
        public var matches: [String]
        public var targets: [WeightedTarget]
    }
}
