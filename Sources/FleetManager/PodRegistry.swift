import Foundation
import Gateway
import NIOConcurrencyHelpers

/// A pod as the fleet reports it (`GET /pods`, `understudy chaos list`).
public struct PodRecord: Sendable, Equatable {
    public var name: String
    /// The pod pool (fleet file) it belongs to.
    public var pool: String
    public var host: String
    public var port: Int
    public var labels: [String: String]
    public var phase: PodPhase
    public var restarts: Int
    /// Running and passing its readiness probe.
    public var isReady: Bool

    public var address: String { "\(host):\(port)" }
}

/// The fleet's pods as the Kubernetes API would list and watch them; the gateway follows it as
/// its `PodSource`, so it learns pods by label and readiness as a cluster's gateway does.
public final class PodRegistry: PodSource, Sendable {
    private struct State {
        var pods: [String: PodRecord] = [:]
        var order: [String] = []
        var watchers: [UUID: @Sendable ([DiscoveredPod]) -> Void] = [:]
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Every pod, in creation order.
    public func list() -> [PodRecord] {
        state.withLockedValue { state in state.order.compactMap { state.pods[$0] } }
    }

    /// Adds or replaces a pod and tells the watchers.
    public func update(_ record: PodRecord) {
        let (watchers, pods) = state.withLockedValue { state -> ([@Sendable ([DiscoveredPod]) -> Void], [DiscoveredPod]) in
            if state.pods[record.name] == nil { state.order.append(record.name) }
            state.pods[record.name] = record
            return (Array(state.watchers.values), Self.discovered(state))
        }
        for watcher in watchers { watcher(pods) }
    }

    /// Removes a pod (deleted, terminated) and tells the watchers.
    public func remove(_ name: String) {
        let (watchers, pods) = state.withLockedValue { state -> ([@Sendable ([DiscoveredPod]) -> Void], [DiscoveredPod]) in
            state.pods[name] = nil
            state.order.removeAll { $0 == name }
            return (Array(state.watchers.values), Self.discovered(state))
        }
        for watcher in watchers { watcher(pods) }
    }

    public func watch(_ onChange: @escaping @Sendable ([DiscoveredPod]) -> Void) async throws {
        let id = UUID()
        let current = state.withLockedValue { state in
            state.watchers[id] = onChange
            return Self.discovered(state)
        }
        onChange(current)
        try await withTaskCancellationHandler {
            while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
        } onCancel: {
            _ = state.withLockedValue { $0.watchers.removeValue(forKey: id) }
        }
    }

    private static func discovered(_ state: State) -> [DiscoveredPod] {
        state.order.compactMap { state.pods[$0] }.map {
            DiscoveredPod(name: $0.name, ip: $0.host, labels: $0.labels, ready: $0.isReady, ports: [$0.port])
        }
    }
}
