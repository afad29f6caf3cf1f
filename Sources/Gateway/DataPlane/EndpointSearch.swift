import InferenceAPI

/// How one request looks for an endpoint that answers, as the gateway's data plane retries
/// (Envoy's `num_retries` on connect failures, `retry_on: reset` when configured): the picker's
/// fallbacks first, then a new pick without the endpoints already tried; at most `maxAttempts`
/// endpoints; a refused connection moves on; a reset before the response head ends the
/// request, or with `retryOnReset` gets one retry on a fresh connection to the same endpoint
/// (`FreshConnectionRetry`) and then moves on. Pure: the built-in proxy's exchange and the
/// simulator both follow it, so a client sees the same retries in real and in virtual time.
public struct EndpointSearch: Sendable {
    /// What to do next.
    public enum Step: Equatable, Sendable {
        /// Connect to this endpoint (now counted as tried).
        case attempt(Endpoint)
        /// The fallbacks ran out: ask the picker for endpoints other than these, then `picked`.
        case pick(excluding: Set<String>)
        /// No endpoint is left to try: Envoy's 503.
        case exhausted
    }

    /// After a reset before the response head.
    public enum AfterReset: Equatable, Sendable {
        /// The request ends with a 503; `blameEndpoint`: the picker is told the endpoint failed
        /// (not when a kept-alive connection was closed as it was reused, which says nothing of it).
        case giveUp(blameEndpoint: Bool)
        /// Connect to the same endpoint again on a fresh connection.
        case retryFresh(Endpoint)
        /// The endpoint failed (tell the picker); go on with `next`.
        case moveOn(Step)
    }

    public let maxAttempts: Int
    public let retryOnReset: Bool
    /// The picker's fallbacks still to try; after them the picker is asked again.
    private var fallbacks: [Endpoint]
    public private(set) var tried: Set<String> = []
    /// Endpoints tried so far (the attempt-count header).
    public private(set) var attempts = 0
    /// The endpoint of the attempt under way.
    public private(set) var current: Endpoint?
    /// The endpoint the request was last sent to (the served-endpoint header names it).
    public private(set) var sentTo: String?
    /// How the last attempt failed, for the 503 when no endpoint answers.
    public private(set) var lastFailure: String?
    private var retry = FreshConnectionRetry()

    /// `endpoints`: the picker's choice, then its fallbacks (none: the picker is asked first).
    public init(endpoints: [Endpoint], maxAttempts: Int, retryOnReset: Bool) {
        fallbacks = endpoints
        self.maxAttempts = maxAttempts
        self.retryOnReset = retryOnReset
    }

    /// The picker's fallbacks first, then a new pick without the endpoints already tried.
    public mutating func next() -> Step {
        guard attempts < maxAttempts else { return .exhausted }
        while !fallbacks.isEmpty {
            let candidate = fallbacks.removeFirst()
            if !tried.contains(candidate.address) { return begin(candidate) }
        }
        return .pick(excluding: tried)
    }

    /// The picker's answer to `.pick` (empty when it has none or refuses).
    public mutating func picked(_ endpoints: [Endpoint]) -> Step {
        let untried = endpoints.filter { !tried.contains($0.address) }
        guard let first = untried.first else { return .exhausted }
        fallbacks = Array(untried.dropFirst())
        return begin(first)
    }

    /// The attempt's connection could not be made: on to the next endpoint (tell the picker).
    public mutating func connectFailed(_ description: String) -> Step {
        if let current { lastFailure = "connecting to \(current.address) failed: \(description)" }
        return next()
    }

    /// The request went out to the attempt's endpoint.
    public mutating func sent() {
        sentTo = current?.address
    }

    /// The attempt's endpoint closed the connection before answering.
    public mutating func resetBeforeHead(connectionWasReused: Bool) -> AfterReset {
        guard let current, retryOnReset else { return .giveUp(blameEndpoint: !connectionWasReused) }
        if retry.shouldRetry(after: .beforeResponse(connectionWasReused: connectionWasReused)) { return .retryFresh(current) }
        lastFailure = "\(current.address) closed the connection before answering"
        return .moveOn(next())
    }

    private mutating func begin(_ endpoint: Endpoint) -> Step {
        attempts += 1
        tried.insert(endpoint.address)
        current = endpoint
        retry = FreshConnectionRetry()
        return .attempt(endpoint)
    }
}
