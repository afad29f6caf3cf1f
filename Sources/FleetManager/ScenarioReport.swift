import Foundation
import InferenceAPI
import Load

/// What the clients of a scenario saw: every request's record, the actions as they ran, and
/// when each pod was routable; summarised per phase (between actions) and per fault.
public struct ScenarioReport: Sendable {
    public var name: String
    public var duration: Double
    public var records: [RequestRecord]
    public var actions: [ActionRecord]
    /// Per pod, when it joined or left the gateway's candidates (the first entry is its state
    /// when watching began or when it appeared).
    public var membership: [String: [Membership]]
    /// Pod name → address, for matching `servedBy`.
    public var addresses: [String: String]

    public struct ActionRecord: Sendable {
        public var at: Double
        public var action: ChaosAction
        public var failure: String?
    }

    public struct Membership: Sendable, Equatable {
        public var at: Double
        public var routable: Bool
    }

    // MARK: Totals

    public var sent: Int { records.count }
    public var succeeded: Int { records.count { $0.outcome.isSuccess } }
    public var shed: Int { records.count { $0.outcome.isShed } }
    public var retried: Int { records.count(where: \.retried) }
    /// Failures other than shedding, by cause.
    public var failuresByCause: [(cause: String, count: Int)] {
        let failed = records.filter { !$0.outcome.isSuccess && !$0.outcome.isShed }
        return Dictionary(grouping: failed, by: { $0.outcome.description }).map { ($0.key, $0.value.count) }.sorted { $0.count > $1.count }
    }
    /// Requests sent more than 10 ms after they were due: the client machine fell behind.
    public var lateSends: Int { records.count { $0.lateness > 0.010 } }

    // MARK: Phases

    /// The stretch of the run between two actions, and what its requests saw.
    public struct Phase: Sendable {
        public var label: String
        public var start: Double
        public var end: Double
        public var records: [RequestRecord]

        public var succeeded: Int { records.count { $0.outcome.isSuccess } }
        public var shed: Int { records.count { $0.outcome.isShed } }
        public var failed: Int { records.count - succeeded - shed }
        /// End-to-end latency and time to first token of the successful requests.
        public var latency: Percentiles { Percentiles(records.filter { $0.outcome.isSuccess }.map(\.latency)) }
        public var timeToFirstToken: Percentiles { Percentiles(records.filter { $0.outcome.isSuccess }.compactMap(\.timeToFirstToken)) }
    }

    /// Before the first action, then from each action to the next. A request belongs to the
    /// phase it was sent in, except one that failed after an action took effect while it was in
    /// flight: the fault cut it short, so it counts in that action's phase (a kill's broken
    /// streams are the kill's, not the calm before it).
    public var phases: [Phase] {
        var bounds: [(label: String, start: Double)] = [("before", 0)]
        bounds += actions.map { ("after \($0.action.summary)", $0.at) }
        var members = Array(repeating: [RequestRecord](), count: bounds.count)
        for record in records { members[phaseIndex(of: record)].append(record) }
        return bounds.enumerated().map { index, bound in
            let end = index + 1 < bounds.count ? bounds[index + 1].start : .infinity
            return Phase(label: bound.label, start: bound.start, end: min(end, duration), records: members[index])
        }
    }

    /// 0 before the first action, i after action i: the last action taken when the request was
    /// sent, or, for a failure, the last fault taken before it ended if that came later (the
    /// fault that broke it in flight; a restore or a scale breaks nothing).
    func phaseIndex(of record: RequestRecord) -> Int {
        // Actions are in the order they ran, so by time: the first one after the send, by halving.
        var low = 0, high = actions.count
        while low < high {
            let middle = (low + high) / 2
            if actions[middle].at <= record.sent { low = middle + 1 } else { high = middle }
        }
        let sentIn = low
        guard !record.outcome.isSuccess, !record.outcome.isShed else { return sentIn }
        let brokenBy = actions.lastIndex { $0.at <= record.finished && Self.isFault($0.action) }.map { $0 + 1 } ?? 0
        return max(sentIn, brokenBy)
    }

    static func isFault(_ action: ChaosAction) -> Bool {
        switch action {
        case .restore, .scale: false
        default: true
        }
    }

    /// The load streams' names, in the order they first sent.
    public var streamNames: [String] {
        // Each stream's earliest send, ties to the earlier record (as a stable sort by send would).
        var first: [String: (sent: Double, index: Int)] = [:]
        for (index, record) in records.enumerated() where record.sent < first[record.stream]?.sent ?? .infinity {
            first[record.stream] = (record.sent, index)
        }
        return first.sorted { ($0.value.sent, $0.value.index) < ($1.value.sent, $1.value.index) }.map(\.key)
    }

    // MARK: Faults

    /// What one fault did: how soon the gateway stopped routing to the pod, when it could route
    /// there again, and the failures clients saw until the next action.
    public struct FaultEffect: Sendable {
        public var action: ActionRecord
        /// Seconds from the action until the pod left the candidates (0: it was out already);
        /// nil if it stayed routable.
        public var stoppedRouting: Double?
        /// Seconds from the action until it was routable again; nil if it was not (yet).
        public var routableAgain: Double?
        /// Requests that failed in the action's phase: sent after it (until the next action), or
        /// in flight when it took effect and failed before the next.
        public var clientFailures: Int
        /// Seconds from the action until the last of those failures ended.
        public var lastFailure: Double?
    }

    public var faults: [FaultEffect] {
        // Failures by phase in one pass: a thousand-pod run has a million records and hundreds of actions.
        var failuresByPhase: [Int: [RequestRecord]] = [:]
        for record in records where !record.outcome.isSuccess && !record.outcome.isShed {
            failuresByPhase[phaseIndex(of: record), default: []].append(record)
        }
        return actions.enumerated().compactMap { index, action -> FaultEffect? in
            guard Self.isFault(action.action) else { return nil }
            let changes = membership[action.action.target] ?? []
            let before = changes.last { $0.at <= action.at }
            let left = before?.routable == false ? before : changes.first { $0.at > action.at && !$0.routable }
            let back = left.flatMap { left in changes.first { $0.at > max(left.at, action.at) && $0.routable } }
            let failures = failuresByPhase[index + 1] ?? []
            return FaultEffect(
                action: action, stoppedRouting: left.map { max(0, $0.at - action.at) }, routableAgain: back.map { $0.at - action.at },
                clientFailures: failures.count, lastFailure: failures.map(\.finished).max().map { $0 - action.at })
        }
    }

    // MARK: Text

    /// The report as `understudy scenario` prints it.
    public func render() -> String {
        var lines: [String] = []
        func percent(_ part: Int, _ whole: Int) -> String { whole == 0 ? "–" : String(format: "%.1f%%", Double(part) / Double(whole) * 100) }
        lines.append("Scenario \(name): \(Self.seconds(duration)) of load, \(sent) requests")
        lines.append("  succeeded \(succeeded) (\(percent(succeeded, sent))), shed (429) \(shed), failed \(sent - succeeded - shed), retried by the gateway \(retried)")
        let causes = failuresByCause
        if !causes.isEmpty { lines.append("  failed by cause: " + causes.map { "\($0.cause): \($0.count)" }.joined(separator: "; ")) }
        if lateSends > 0 {
            lines.append("  note: \(lateSends) requests were sent more than 10 ms late — this machine, not the fleet, limited those")
        }
        for action in actions where action.failure != nil {
            lines.append("  action at \(Self.seconds(action.at)) failed: \(action.action.summary): \(action.failure!)")
        }
        lines.append("")
        lines.append("  Phases: a request counts where it was sent, or, if a later fault failed it in flight, after that fault.")
        var table = [["PHASE", "FROM", "STREAM", "SENT", "OK", "FAILED", "SHED", "E2E p50/p90/p99 ms", "TTFT p50/p90/p99 ms"]]
        let streams = streamNames
        for phase in phases {
            // One row per stream (a critical stream and a sheddable one fare differently), and
            // the phase's total when there are several.
            var rows = streams.map { name in (name, Phase(label: phase.label, start: phase.start, end: phase.end, records: phase.records.filter { $0.stream == name })) }
            if streams.count != 1 { rows.append(("all", phase)) }
            for (position, (stream, part)) in rows.enumerated() {
                table.append([
                    position == 0 ? phase.label : "", position == 0 ? Self.seconds(phase.start) : "", stream, "\(part.records.count)",
                    "\(part.succeeded)", "\(part.failed)", "\(part.shed)", Self.triple(part.latency), Self.triple(part.timeToFirstToken),
                ])
            }
        }
        lines += TextTable.lines(table, indent: "  ")
        let faults = self.faults
        if !faults.isEmpty {
            lines.append("")
            var table = [["FAULT", "AT", "GATEWAY STOPPED ROUTING", "ROUTABLE AGAIN", "CLIENT FAILURES", "LAST FAILURE"]]
            for fault in faults {
                table.append([
                    fault.action.action.summary, Self.seconds(fault.action.at),
                    fault.stoppedRouting.map { "+" + Self.milliseconds($0) } ?? "kept routing",
                    fault.routableAgain.map { "+" + Self.seconds($0) } ?? "–",
                    "\(fault.clientFailures)", fault.lastFailure.map { "+" + Self.seconds($0) } ?? "–",
                ])
            }
            lines += TextTable.lines(table, indent: "  ")
        }
        return lines.joined(separator: "\n")
    }

    // MARK: JSON

    /// The report as `understudy scenario --out DIR` writes it to report.json: totals, phases
    /// by stream with latency percentiles in seconds, faults, and the actions as they ran.
    public func json() -> JSONValue {
        func percentiles(_ sample: Percentiles) -> JSONValue {
            guard sample.count > 0 else { return .null }
            return .object(["p50": .double(sample.value(at: 50)!), "p90": .double(sample.value(at: 90)!), "p99": .double(sample.value(at: 99)!)])
        }
        func counts(_ phase: Phase) -> JSONObject {
            [
                "sent": .integer(phase.records.count), "succeeded": .integer(phase.succeeded), "failed": .integer(phase.failed),
                "shed": .integer(phase.shed), "latency": percentiles(phase.latency), "timeToFirstToken": percentiles(phase.timeToFirstToken),
            ]
        }
        let streams = streamNames
        let phases: [JSONValue] = self.phases.map { phase in
            var object: JSONObject = ["label": .string(phase.label), "start": .double(phase.start), "end": .double(phase.end)]
            for (key, value) in counts(phase) { object[key] = value }
            object["streams"] = .array(streams.map { name in
                var row: JSONObject = ["stream": .string(name)]
                for (key, value) in counts(Phase(label: phase.label, start: phase.start, end: phase.end, records: phase.records.filter { $0.stream == name })) {
                    row[key] = value
                }
                return .object(row)
            })
            return .object(object)
        }
        let faults: [JSONValue] = self.faults.map { fault in
            .object([
                "action": .string(fault.action.action.summary), "at": .double(fault.action.at),
                "stoppedRouting": fault.stoppedRouting.map { .double($0) } ?? .null,
                "routableAgain": fault.routableAgain.map { .double($0) } ?? .null,
                "clientFailures": .integer(fault.clientFailures), "lastFailure": fault.lastFailure.map { .double($0) } ?? .null,
            ])
        }
        var causes = JSONObject()
        for (cause, count) in failuresByCause { causes[cause] = .integer(count) }
        return .object([
            "name": .string(name), "duration": .double(duration), "sent": .integer(sent), "succeeded": .integer(succeeded),
            "shed": .integer(shed), "retried": .integer(retried), "lateSends": .integer(lateSends),
            "failuresByCause": .object(causes),
            "phases": .array(phases), "faults": .array(faults),
            "actions": .array(actions.map { .object(["at": .double($0.at), "action": .string($0.action.summary), "failure": $0.failure.map { .string($0) } ?? .null]) }),
        ])
    }

    static func seconds(_ value: Double) -> String { String(format: "%.2f s", value) }
    static func milliseconds(_ value: Double) -> String { String(format: "%.0f ms", value * 1000) }

    static func triple(_ sample: Percentiles) -> String {
        guard sample.count > 0 else { return "–" }
        return [50.0, 90, 99].map { String(format: "%.0f", sample.value(at: $0)! * 1000) }.joined(separator: "/")
    }
}
