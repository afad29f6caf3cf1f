import EnvoyAPI
import GatewayExtProc
import GRPCCore
import GRPCInProcessTransport
import Testing

/// The picker's gRPC health, through a real gRPC client and server (in-process transport).
struct PickerHealthTests {
    @Test func everyServiceIsServingOnceThePickerIsReadyAndWatchIsUnimplemented() async throws {
        let health = PickerHealth()
        let transport = InProcessTransport()
        try await withGRPCServer(transport: transport.server, services: [health]) { _ in
            try await withGRPCClient(transport: transport.client) { client in
                let stub = Grpc_Health_V1_Health.Client(wrapping: client)
                let names = ["liveness", "readiness", "", "envoy.service.ext_proc.v3.ExternalProcessor", "inference-extension"]
                func statuses() async throws -> [Grpc_Health_V1_HealthCheckResponse.ServingStatus] {
                    var result: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
                    for name in names {
                        var request = Grpc_Health_V1_HealthCheckRequest()
                        request.service = name
                        result.append(try await stub.check(request).status)
                    }
                    return result
                }
                let before = try await statuses()
                #expect(before == Array(repeating: .notServing, count: names.count))
                health.markReady()
                let after = try await statuses()
                #expect(after == Array(repeating: .serving, count: names.count))

                var watchError: RPCError?
                do {
                    try await stub.watch(Grpc_Health_V1_HealthCheckRequest()) { response in
                        for try await _ in response.messages {}
                    }
                } catch let error as RPCError {
                    watchError = error
                }
                #expect(watchError?.code == .unimplemented, "\(String(describing: watchError))")
            }
        }
    }
}
