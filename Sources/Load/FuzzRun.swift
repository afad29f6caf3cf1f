import InferenceAPI
import NIOCore
import NIOPosix

/// Sends a `RequestFuzzer`'s cases to a live server, a few at a time, and counts what came
/// back. A case fails when it was answered with a 5xx (a stream's error event included), not
/// answered within `hangAfter` (a hang), cut off mid-answer, or not answered at all (the server
/// refused or dropped the connection: it may have crashed).
public struct FuzzRun: Sendable {
    public var cases: Int
    public var seed: UInt64
    /// Requests in flight at once.
    public var concurrency: Int
    /// An answer slower than this is a hang.
    public var hangAfter: TimeAmount
    public var model: String

    public init(cases: Int, seed: UInt64 = 1, concurrency: Int = 8, hangAfter: TimeAmount = .seconds(5), model: String = "meta-llama/Meta-Llama-3-8B") {
        self.cases = cases
        self.seed = seed
        self.concurrency = concurrency
        self.hangAfter = hangAfter
        self.model = model
    }

    /// What a run saw.
    public struct Report: Sendable, CustomStringConvertible {
        public var cases = 0
        /// Answers by status (a stream's error event counts as its code).
        public var statuses: [Int: Int] = [:]
        public var hangs = 0
        public var truncated = 0
        public var unanswered = 0
        /// The first few failing cases: what was sent and what came back.
        public var failures: [String] = []

        public var serverErrors: Int { statuses.filter { $0.key >= 500 }.values.reduce(0, +) }
        public var failed: Int { serverErrors + hangs + truncated + unanswered }

        public var description: String {
            let byStatus = statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            return "\(cases) cases — answers by status {\(byStatus)}; 5xx \(serverErrors), hangs \(hangs), cut off \(truncated), unanswered \(unanswered)"
        }
    }

    /// Sends every case to `host:port` and returns the tally; `progress` is called now and then
    /// with the cases done.
    public func run(host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, progress: @Sendable (Int) -> Void = { _ in }) async -> Report {
        let client = LoadClient(host: host, port: port, group: group, timeout: hangAfter)
        defer { client.close() }
        var fuzzer = RequestFuzzer(seed: seed, model: model)
        var report = Report()
        await withTaskGroup(of: (LoadRequest, RequestRecord).self) { group in
            var sent = 0
            func launch() {
                let request = fuzzer.next()
                sent += 1
                group.addTask { (request, await client.send(request)) }
            }
            while sent < min(concurrency, cases) { launch() }
            for await (request, record) in group {
                Self.tally(record, request, into: &report)
                if report.cases % 10_000 == 0 { progress(report.cases) }
                if sent < cases { launch() }
            }
        }
        return report
    }

    static func tally(_ record: RequestRecord, _ request: LoadRequest, into report: inout Report) {
        report.cases += 1
        var failure: String?
        switch record.outcome {
        case .ok: report.statuses[200, default: 0] += 1
        case .status(let code):
            report.statuses[code, default: 0] += 1
            if code >= 500 { failure = "HTTP \(code)" }
        case .streamError(let code):
            report.statuses[code, default: 0] += 1
            if code >= 500 { failure = "stream error event \(code)" }
        case .truncated:
            report.truncated += 1
            failure = "cut off mid-answer"
        case .timedOut:
            report.hangs += 1
            failure = "no answer within the hang limit"
        case .connectionFailed(let why):
            report.unanswered += 1
            failure = "no answer: \(why)"
        }
        guard let failure, report.failures.count < 20 else { return }
        let body = request.body.map { String(decoding: $0.readableBytesView.prefix(300), as: UTF8.self) } ?? ""
        report.failures.append("\(failure) ← \(request.method) \(request.path) \(request.headers.map { "\($0.0): \($0.1.prefix(40))" }) \(body)")
    }
}
