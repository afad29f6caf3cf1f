import ArgumentParser
import FleetManager
import Foundation
import Load
import NIOHTTP1

/// `understudy chaos`: a client of a running fleet's admin API (`understudy up`).
struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Break a running fleet on purpose, through its admin API.",
        subcommands: [List.self, Kill.self, Hang.self, Slow.self, Errors.self, Partition.self, KVPressure.self, Drain.self, Restore.self, Scale.self])

    struct Target: ParsableArguments {
        @Option(help: "The fleet's admin API.") var admin = "http://127.0.0.1:8070"
        @Option(help: "The admin API's token, when understudy up was given one (also UNDERSTUDY_ADMIN_TOKEN).") var adminToken: String?
    }

    /// Sends one admin request and prints the pods it answers with, or its error.
    static func call(_ target: Target, _ method: HTTPMethod, _ path: String) async throws {
        let admin = target.admin
        let token = target.adminToken ?? ProcessInfo.processInfo.environment["UNDERSTUDY_ADMIN_TOKEN"]
        let status: Int, data: Data
        do {
            let answer = try await AdminClient.send(method, admin + path, token: token)
            (status, data) = (answer.status, Data(answer.body))
        } catch let failure as AdminClient.Failure {
            throw ChaosError(description: failure.description)
        } catch {
            throw ChaosError(description: "cannot reach the fleet's admin API at \(admin) (is `understudy up` running?): \(error)")
        }
        guard status == 200 else {
            // Not the admin API's error JSON (another server on that port, say): the body is the message.
            let message = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])
                .flatMap { ($0["error"] as? [String: Any])?["message"] as? String } ?? String(decoding: data, as: UTF8.self)
            throw ChaosError(description: message)
        }
        guard let pods = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return }
        // READY as kubectl shows it: a hung pod is Running but 0/1 once its probe fails.
        let rows = [["POD", "POOL", "ADDRESS", "READY", "STATE", "RESTARTS", "FAULTS"]] + pods.map { pod in
            [pod["name"], pod["pool"], pod["address"], (pod["ready"] as? Bool).map { $0 ? "1/1" : "0/1" }, pod["state"], pod["restarts"],
             (pod["faults"] as? [String])?.joined(separator: ",")]
                .map { $0.map { "\($0)" } ?? "" }
        }
        for line in TextTable.lines(rows) { print(line) }
    }

    /// A chaos action on one pod with no parameters: `POST /pods/POD/ACTION`.
    protocol PodAction: AsyncParsableCommand {
        static var action: String { get }
        var target: Target { get }
        var pod: String { get }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The fleet's pods, their state and faults.")
        @OptionGroup var target: Target
        func run() async throws { try await Chaos.call(target, .GET, "/pods") }
    }

    struct Kill: PodAction {
        static let configuration = CommandConfiguration(abstract: "End a pod abruptly (connections reset); it restarts with back-off.")
        static let action = "kill"
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
    }

    struct Hang: PodAction {
        static let configuration = CommandConfiguration(abstract: "Make a pod accept requests and answer none, until restored.")
        static let action = "hang"
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
    }

    struct Slow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Multiply a pod's step time, until restored.")
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
        @Option(help: "Step-time factor.") var factor = 4.0
        func run() async throws { try await Chaos.call(target, .POST, "/pods/\(pod)/slow?factor=\(factor)") }
    }

    struct Errors: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a share of a pod's requests fail, with an HTTP status or a cut connection.")
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
        @Option(help: "Share of requests that fail, 0…1.") var rate = 0.5
        @Option(help: "HTTP status of the failures (400…599).") var status = 500
        @Flag(help: "Cut the connection mid-response instead of answering with a status.") var cut = false
        func run() async throws {
            try await Chaos.call(target, .POST, "/pods/\(pod)/errors?rate=\(rate)" + (cut ? "&kind=cut" : "&status=\(status)"))
        }
    }

    struct Restore: PodAction {
        static let configuration = CommandConfiguration(abstract: "Undo a pod's hang, slow, errors, partition or KV pressure.")
        static let action = "restore"
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
    }

    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a pool's number of pods; extra pods drain, new ones start and load.")
        @OptionGroup var target: Target
        @Argument(help: "The pool.") var pool: String
        @Argument(help: "Pods wanted.") var replicas: Int
        func run() async throws { try await Chaos.call(target, .POST, "/pools/\(pool)/scale?replicas=\(replicas)") }
    }

    struct Partition: PodAction {
        static let configuration = CommandConfiguration(abstract: "Reset every connection to a pod, the gateway's included, until restored.")
        static let action = "partition"
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
    }

    struct KVPressure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kv-pressure", abstract: "Leave only a share of a pod's KV cache to requests, until restored.")
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
        @Option(help: "Share of the KV cache left usable, 0…1.") var usable = 0.1
        func run() async throws { try await Chaos.call(target, .POST, "/pods/\(pod)/kv-pressure?usable=\(usable)") }
    }

    struct Drain: PodAction {
        static let configuration = CommandConfiguration(
            abstract: "Evict a pod gracefully: it leaves the pool and finishes its requests; a replacement starts.")
        static let action = "drain"
        @OptionGroup var target: Target
        @Argument(help: "The pod.") var pod: String
    }
}

/// What the admin API refused, or why it could not be reached.
struct ChaosError: Error, CustomStringConvertible {
    var description: String
}

extension Chaos.PodAction {
    func run() async throws { try await Chaos.call(target, .POST, "/pods/\(pod)/\(Self.action)") }
}
