/// One request as its client saw it: when it was due and sent, when its answer began and
/// ended, how it ended, and who served it. Times are seconds since the run started.
public struct RequestRecord: Sendable {
    /// The load stream it belongs to (a scenario's `load[].name`, a bench stage).
    public var stream: String
    /// When the arrival process wanted it sent, and when it was.
    public var scheduled: Double
    public var sent: Double
    /// The response head arrived.
    public var head: Double?
    /// The first generated text of a stream arrived (its first SSE event with a choice); nil
    /// for a whole response, whose text comes all at once at `finished`.
    public var firstToken: Double?
    /// The answer ended (or the request failed).
    public var finished: Double
    public var outcome: Outcome
    /// `x-gateway-destination-endpoint-served` and Envoy's `x-envoy-attempt-count`.
    public var servedBy: String?
    public var attempts: Int?
    /// From the answer's `usage` (streams ask for it with `stream_options.include_usage`).
    public var inputTokens: Int?
    public var outputTokens: Int?
    /// Seconds between consecutive generated-text events of a stream (inter-token latencies).
    public var interTokenGaps: [Double] = []

    public init(
        stream: String, scheduled: Double, sent: Double, head: Double? = nil, firstToken: Double? = nil, finished: Double, outcome: Outcome,
        servedBy: String? = nil, attempts: Int? = nil, outputTokens: Int? = nil
    ) {
        self.stream = stream
        self.scheduled = scheduled
        self.sent = sent
        self.head = head
        self.firstToken = firstToken
        self.finished = finished
        self.outcome = outcome
        self.servedBy = servedBy
        self.attempts = attempts
        self.outputTokens = outputTokens
    }

    public var latency: Double { finished - sent }
    public var timeToFirstToken: Double? { firstToken.map { $0 - sent } }
    /// Normalised time per output token (NTPOT): end-to-end latency over the tokens generated,
    /// as GIE's benchmark (LPG's `per_output_token_latency`) and inference-perf compute it.
    public var normalizedTimePerOutputToken: Double? {
        guard let outputTokens, outputTokens > 0 else { return nil }
        return latency / Double(outputTokens)
    }
    /// Time per output token after the first (vLLM's TPOT): (e2e − TTFT) / (tokens − 1).
    public var timePerOutputToken: Double? {
        guard let timeToFirstToken, let outputTokens, outputTokens > 1 else { return nil }
        return (latency - timeToFirstToken) / Double(outputTokens - 1)
    }
    /// Sent later than due: the client, not the server, fell behind.
    public var lateness: Double { sent - scheduled }
    public var retried: Bool { (attempts ?? 1) > 1 }
}

/// How a request ended.
public enum Outcome: Sendable, Hashable, CustomStringConvertible {
    /// A 2xx answer, complete (a stream ended with `data: [DONE]` and no error event).
    case ok
    /// An HTTP error status before any body (429 is shedding).
    case status(Int)
    /// A stream that began (200) and ended with an error event carrying this code.
    case streamError(Int)
    /// A stream or body that stopped without its end: the connection closed mid-answer.
    case truncated
    /// No answer: the connection was refused, reset or closed before a response head.
    case connectionFailed(String)
    /// The client's own timeout passed.
    case timedOut

    public var isSuccess: Bool { self == .ok }
    public var isShed: Bool { self == .status(429) }

    public var description: String {
        switch self {
        case .ok: "ok"
        case .status(let code): "HTTP \(code)"
        case .streamError(let code): "stream error event \(code)"
        case .truncated: "truncated (connection closed mid-answer)"
        case .connectionFailed(let why): "no answer (\(why))"
        case .timedOut: "client timeout"
        }
    }
}
