import EnvoyAPI
import GRPCCore
import Synchronization

/// gRPC health as GIE's endpoint picker answers it with leader election off
/// (`cmd/epp/runner/health.go`, v1.5.0): every service name — `liveness`, `readiness`, `""`,
/// `envoy.service.ext_proc.v3.ExternalProcessor`, or any other — is SERVING once the picker has
/// its pool, NOT_SERVING before. `Watch` is not implemented, as there.
public final class PickerHealth: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
    private let ready = Atomic(false)

    public init() {}

    /// The pool is known and its endpoints are being scraped: the picker can decide.
    public func markReady() { ready.store(true, ordering: .releasing) }

    public var isReady: Bool { ready.load(ordering: .acquiring) }

    public func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = isReady ? .serving : .notServing
        return response
    }

    public func watch(
        request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>, context: ServerContext
    ) async throws {
        throw RPCError(code: .unimplemented, message: "Watch is not implemented")
    }
}
