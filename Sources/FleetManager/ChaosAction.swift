import FakeVLLM

/// Something done to a fleet on purpose: from the admin API, `understudy chaos`, or a
/// scenario's timeline. One parser serves all three, so they accept the same words.
public enum ChaosAction: Sendable, Equatable {
    /// Ends the pod's server abruptly; it restarts with back-off.
    case kill(pod: String)
    /// Accepts and reads requests, answers none, takes no step (SIGSTOP).
    case hang(pod: String)
    /// Every engine step takes `factor` times as long.
    case slow(pod: String, factor: Double)
    /// A share of generation requests fails with an HTTP status or a cut connection.
    case errors(pod: String, FaultInjection)
    /// Connections to the pod are reset, the gateway's and its scrapes included.
    case partition(pod: String)
    /// Only `usable` (0…1) of the pod's KV cache is left to requests.
    case kvPressure(pod: String, usable: Double)
    /// Evicted gracefully (leaves the pool, finishes its requests); a replacement starts.
    case drain(pod: String)
    /// Undoes hang, slow, errors, partition and KV pressure.
    case restore(pod: String)
    /// The pool's number of pods.
    case scale(pool: String, replicas: Int)

    /// The verbs, as the admin API's paths and a scenario's `action:` name them.
    public static let podVerbs = ["kill", "hang", "slow", "errors", "partition", "kv-pressure", "drain", "restore"]

    /// A pod action from its verb and parameters (`factor`, `rate`, `status`, `kind`, `usable`).
    public static func pod(_ pod: String, verb: String, _ parameters: [String: String]) throws(FleetError) -> ChaosAction {
        func number(_ key: String, _ range: ClosedRange<Double>, default value: Double? = nil) throws(FleetError) -> Double {
            guard let text = parameters[key] else {
                guard let value else { throw FleetError("\(verb) needs \(key) (\(range.lowerBound)…\(range.upperBound))") }
                return value
            }
            guard let number = Double(text), number.isFinite, range.contains(number) else {
                throw FleetError("\(verb): \(key) must be a number within \(range.lowerBound)…\(range.upperBound), got \(text)")
            }
            return number
        }
        switch verb {
        case "kill": return .kill(pod: pod)
        case "hang": return .hang(pod: pod)
        case "partition": return .partition(pod: pod)
        case "drain": return .drain(pod: pod)
        case "restore": return .restore(pod: pod)
        case "slow":
            let factor = try number("factor", 0.001...1000)
            return .slow(pod: pod, factor: factor)
        case "kv-pressure":
            return .kvPressure(pod: pod, usable: try number("usable", 0...1, default: 0.1))
        case "errors":
            let rate = try number("rate", 0...1)
            if parameters["kind"] == "cut" { return .errors(pod: pod, FaultInjection(rate: rate, kind: .cutStream)) }
            guard parameters["kind"] == nil || parameters["kind"] == "status" else {
                throw FleetError("errors: kind must be status or cut, got \(parameters["kind"]!)")
            }
            let status = try number("status", 400...599)
            guard status == status.rounded() else { throw FleetError("errors: status must be an HTTP status code, got \(status)") }
            return .errors(pod: pod, FaultInjection(rate: rate, kind: .status(Int(status))))
        default:
            throw FleetError("no action \(verb); actions: \(podVerbs.joined(separator: ", ")), scale")
        }
    }

    /// How a listing shows the fault this action leaves on a pod.
    var faultLabel: String? {
        switch self {
        case .hang: "hang"
        case .slow(_, let factor): "slow ×\(factor.formatted())"
        case .errors(_, let injection):
            switch injection.kind {
            case .status(let status): "errors \(Int((injection.rate * 100).rounded()))% HTTP \(status)"
            case .cutStream: "errors \(Int((injection.rate * 100).rounded()))% cut"
            }
        case .partition: "partition"
        case .kvPressure(_, let usable): "kv-pressure \(Int((usable * 100).rounded()))% usable"
        case .kill, .drain, .restore, .scale: nil
        }
    }

    /// Its verb, as the admin API's path names it.
    public var verb: String {
        switch self {
        case .kill: "kill"
        case .hang: "hang"
        case .slow: "slow"
        case .errors: "errors"
        case .partition: "partition"
        case .kvPressure: "kv-pressure"
        case .drain: "drain"
        case .restore: "restore"
        case .scale: "scale"
        }
    }

    /// Its parameters as `pod(_:verb:_:)` reads them (the inverse of parsing).
    public var parameters: [String: String] {
        switch self {
        case .slow(_, let factor): ["factor": "\(factor)"]
        case .errors(_, let injection):
            switch injection.kind {
            case .cutStream: ["rate": "\(injection.rate)", "kind": "cut"]
            case .status(let status): ["rate": "\(injection.rate)", "status": "\(status)"]
            }
        case .kvPressure(_, let usable): ["usable": "\(usable)"]
        case .scale(_, let replicas): ["replicas": "\(replicas)"]
        case .kill, .hang, .partition, .drain, .restore: [:]
        }
    }

    /// The pod (or pool) it acts on, for reports.
    public var target: String {
        switch self {
        case .kill(let pod), .hang(let pod), .slow(let pod, _), .errors(let pod, _), .partition(let pod), .kvPressure(let pod, _),
             .drain(let pod), .restore(let pod):
            pod
        case .scale(let pool, _): pool
        }
    }

    /// Reads as the command that would do it (`kill llama3-h100-0`).
    public var summary: String {
        switch self {
        case .kill(let pod): "kill \(pod)"
        case .hang(let pod): "hang \(pod)"
        case .slow(let pod, let factor): "slow \(pod) ×\(factor.formatted())"
        case .errors(let pod, _): "\(faultLabel!) on \(pod)"
        case .partition(let pod): "partition \(pod)"
        case .kvPressure(let pod, let usable): "kv-pressure \(pod) (\(Int((usable * 100).rounded()))% usable)"
        case .drain(let pod): "drain \(pod)"
        case .restore(let pod): "restore \(pod)"
        case .scale(let pool, let replicas): "scale \(pool) to \(replicas)"
        }
    }
}
