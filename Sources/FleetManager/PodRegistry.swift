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
        var watchers: [UUID: Watcher] = [:]
        /// Bumped by every change, as a resourceVersion: a watcher never goes back to an older view.
        var version = 0
    }

    /// One watch: views are handed over one at a time, and one older than the last is dropped
    /// (a change racing the watch's first listing).
    private final class Watcher: Sendable {
        private let delivered = NIOLockedValueBox(-1)
        private let onChange: @Sendable ([DiscoveredPod]) -> Void

        init(_ onChange: @escaping @Sendable ([DiscoveredPod]) -> Void) { self.onChange = onChange }

        func deliver(_ pods: [DiscoveredPod], version: Int) {
            delivered.withLockedValue { last in
                guard version > last else { return }
                last = version
                onChange(pods)
            }
        }
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Every pod, in creation order.
    public func list() -> [PodRecord] {
        state.withLockedValue { state in state.order.compactMap { state.pods[$0] } }
    }

    /// Adds or replaces a pod and tells the watchers.
    public func update(_ record: PodRecord) {
        change { state in
            if state.pods[record.name] == nil { state.order.append(record.name) }
            state.pods[record.name] = record
        }
    }

    /// Removes a pod (deleted, terminated) and tells the watchers.
    public func remove(_ name: String) {
        change { state in
            state.pods[name] = nil
            state.order.removeAll { $0 == name }
        }
    }

    /// Applies a change and hands the new view to every watcher, outside the lock.
    private func change(_ apply: (inout State) -> Void) {
        let (watchers, pods, version) = state.withLockedValue { state in
            apply(&state)
            state.version += 1
            return (Array(state.watchers.values), Self.discovered(state), state.version)
        }
        for watcher in watchers { watcher.deliver(pods, version: version) }
    }

    public func watch(_ onChange: @escaping @Sendable ([DiscoveredPod]) -> Void) async throws {
        let id = UUID()
        let watcher = Watcher(onChange)
        let (current, version) = state.withLockedValue { state in
            state.watchers[id] = watcher
            return (Self.discovered(state), state.version)
        }
        watcher.deliver(current, version: version)
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
