import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// How `serve`, `gateway` and `up` run until they are told to stop: under swift-service-lifecycle,
/// SIGTERM or SIGINT starts a graceful shutdown (`drain`: new connections refused, what is in
/// flight finishes), after which the process exits 0; a second signal quits at once, as
/// uvicorn's and Envoy's second signal does.
struct Draining: Service {
    /// Returns when the server has stopped on its own (or after a drain).
    let untilClosed: @Sendable () async throws -> Void
    /// Refuses new work, waits for the work in flight, stops.
    let drain: @Sendable () async -> Void
    let logger: Logger

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await untilClosed()
                // Draining closes the listener too: then the drain decides when it is over.
                if Task.isShuttingDownGracefully { try await Task.sleep(for: .seconds(86_400 * 365)) }
            }
            group.addTask {
                try await gracefulShutdown()
                let quit = Task {
                    for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                        logger.warning("\(signal) again: quitting now")
                        exit(1)
                    }
                }
                await drain()
                quit.cancel()
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Runs it to the end.
    static func run(
        logger: Logger, untilClosed: @escaping @Sendable () async throws -> Void, drain: @escaping @Sendable () async -> Void
    ) async throws {
        let service = Draining(untilClosed: untilClosed, drain: drain, logger: logger)
        let configuration = ServiceGroupConfiguration(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "lifecycle", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await ServiceGroup(configuration: configuration).run()
    }
}
