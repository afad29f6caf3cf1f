// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Understudy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "understudy", targets: ["understudy"]),
        .library(name: "InferenceAPI", targets: ["InferenceAPI"]),
        .library(name: "FakeVLLM", targets: ["FakeVLLM"]),
        .library(name: "Gateway", targets: ["Gateway"]),
        .library(name: "FleetManager", targets: ["FleetManager"]),
        .library(name: "Load", targets: ["Load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        // OpenAI/vLLM wire types, JSON, SSE framing, error envelope, tokenizer, Prometheus text,
        // the HTTP/1.1 server pipeline every listener uses (TLS through swift-nio-ssl).
        .target(
            name: "InferenceAPI",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The emulated vLLM server: engine core, timing model, HTTP driver.
        .target(
            name: "FakeVLLM",
            dependencies: [
                "InferenceAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The inference gateway and endpoint picker (issue 3).
        .target(
            name: "Gateway",
            dependencies: [
                "InferenceAPI",
                .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // Envoy's external processing API and gRPC health (issue 15): messages and service stubs
        // generated once from protos/ by scripts/generate-protos.sh, and committed.
        .target(
            name: "EnvoyAPI",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ]
        ),
        // The endpoint picker's gRPC front end for Envoy (issue 15): ext_proc and health, over
        // HTTP/2 with TLS (a self-signed certificate, as GIE's picker) or plaintext.
        .target(
            name: "GatewayExtProc",
            dependencies: [
                "EnvoyAPI", "Gateway",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Load and what clients saw: the HTTP load client, Poisson arrivals, workloads, the bench
        // runner, stage summaries and their reports (tables, JSON, CSV, SVG charts).
        .target(
            name: "Load",
            dependencies: [
                "InferenceAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // Fleet, lifecycle, chaos, scenarios, bench and sim (issues 4 and 5).
        .target(
            name: "FleetManager",
            dependencies: [
                "InferenceAPI", "FakeVLLM", "Gateway", "GatewayExtProc", "Load", .product(name: "Yams", package: "Yams"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "understudy",
            dependencies: [
                "FakeVLLM", "Gateway", "GatewayExtProc", "FleetManager", "Load",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(name: "InferenceAPITests", dependencies: ["InferenceAPI", "TestSupport"]),
        .testTarget(
            name: "GatewayExtProcTests",
            dependencies: [
                "GatewayExtProc", "EnvoyAPI", "Gateway", "FakeVLLM", "FleetManager", "InferenceAPI", "TestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"), .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "EnvoyAPITests",
            dependencies: ["EnvoyAPI", .product(name: "SwiftProtobuf", package: "swift-protobuf"), .product(name: "GRPCCore", package: "grpc-swift-2")]
        ),
        .testTarget(
            name: "LoadTests",
            dependencies: [
                "Load", "InferenceAPI", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "FleetManagerTests",
            dependencies: [
                "FleetManager", "FakeVLLM", "Gateway", "InferenceAPI", "Load", "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Helpers the test targets share: running external tools (promtool, the OpenAI SDK).
        .target(
            name: "TestSupport",
            dependencies: [
                "InferenceAPI", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "Tests/TestSupport"
        ),
        // Gateway tests run real FakeVLLM pods; the Gateway module itself never imports FakeVLLM.
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "FakeVLLM", "TestSupport", .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(
            name: "FakeVLLMTests",
            dependencies: [
                "FakeVLLM", "InferenceAPI", "TestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
