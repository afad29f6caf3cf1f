import FakeVLLM
import Foundation
@testable import Gateway
import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import TestSupport
import Testing

/// The data plane against real FakeVLLM pods: what a client of the gateway sees.
extension EndToEnd {
@Suite struct GatewayProxyTests {
    @Test func completionsAndChatPassThroughNamingTheEndpoint() async throws {
        let stack = try await GatewayStack.start()
        defer { Task { await stack.stop() } }
        let completion = try await stack.post("/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hello there", "max_tokens": 5}"#)
        #expect(completion.status == 200)
        #expect(completion.json?["object"]?.string == "text_completion")
        #expect(completion.json?["model"]?.string == "meta-llama/Meta-Llama-3-8B")
        let served = try #require(completion.servedBy)
        #expect((0..<3).map(stack.address(of:)).contains(served))

        let chat = try await stack.post("/v1/chat/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}"#)
        #expect(chat.status == 200)
        #expect(chat.json?["object"]?.string == "chat.completion")

        // Other paths go to a candidate as they are.
        let models = try await stack.send("/v1/models", method: .GET)
        #expect(models.status == 200)
        #expect(models.json?["data"]?.array?.first?["id"]?.string == "meta-llama/Meta-Llama-3-8B")
    }

    @Test func streamsArriveAsServerSentEvents() async throws {
        let stack = try await GatewayStack.start()
        defer { Task { await stack.stop() } }
        let response = try await stack.post(
            "/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Count", "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}}"#)
        #expect(response.status == 200)
        #expect(response.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
        let events = response.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.last == "data: [DONE]")
        #expect(events.count >= 7)
        let usage = try JSONValue.parse(String(events[events.count - 2].dropFirst(6)))
        #expect(usage["usage"]?["completion_tokens"]?.int == 6)
    }

    @Test func errorsComeBackInOpenAIsEnvelope() async throws {
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha2
            kind: InferenceModel
            metadata: {name: base}
            spec: {modelName: meta-llama/Meta-Llama-3-8B, poolRef: {name: pool}}
            """, pod: { _, pod in pod.servedModelNames = ["meta-llama/Meta-Llama-3-8B", "served-but-unnamed"] })
        defer { Task { await stack.stop() } }
        let bad = try await stack.post("/v1/completions", #"{"model": "#)
        #expect(bad.status == 400)
        #expect(bad.json?["error"]?["type"]?.string == "BadRequest")
        let missing = try await stack.post("/v1/completions", #"{"prompt": "x"}"#)
        #expect(missing.status == 400)
        #expect(missing.json?["error"]?["message"]?.string == "inference error: BadRequest - model not found in request body")
        // The gateway passes a model no InferenceModel names (as Sheddable); the pod has no such
        // model and says so, in vLLM's words.
        let unknown = try await stack.post("/v1/completions", #"{"model": "nope", "prompt": "x"}"#)
        #expect(unknown.status == 404)
        #expect(unknown.json?["error"]?["message"]?.string == "The model `nope` does not exist.")
        // A model the pods serve that no InferenceModel names is served.
        let unnamed = try await stack.post("/v1/completions", #"{"model": "served-but-unnamed", "prompt": "Hi", "max_tokens": 2}"#)
        #expect(unnamed.status == 200)
    }

    @Test func aTargetModelSplitRewritesTheBodyAndTheResponseBack() async throws {
        let stack = try await GatewayStack.start(manifests: GatewayStack.poolYAML + TestManifests.alias("friendly-name", to: "meta-llama/Meta-Llama-3-8B"))
        defer { Task { await stack.stop() } }
        let plain = try await stack.post("/v1/completions", #"{"model": "friendly-name", "prompt": "Hi", "max_tokens": 3}"#)
        #expect(plain.status == 200)
        #expect(plain.json?["model"]?.string == "friendly-name")
        let stream = try await stack.post("/v1/chat/completions", #"{"model": "friendly-name", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true}"#)
        #expect(stream.status == 200)
        #expect(!stream.body.contains("Meta-Llama"))
        #expect(stream.body.contains(#""model":"friendly-name""#))
    }

    /// A request the endpoint took and dropped is not retried (GIE's Envoy config names no
    /// retry policy): the client gets Envoy's 503 naming the reset. With `retryOnReset` (Envoy's
    /// `retry_on: reset`) it is retried on another endpoint.
    @Test(arguments: [false, true])
    func aRequestWhoseEndpointDropsTheConnectionIsRetriedOnlyWithRetryOnReset(retryOnReset: Bool) async throws {
        // An endpoint whose metrics look healthy but which drops every inference connection,
        // and a round-robin picker that is sure to send it its share first.
        let dropping = try await DroppingModelServer.start()
        defer { Task { try? await dropping.channel.close() } }
        let roundRobin = """

            ---
            apiVersion: inference.networking.x-k8s.io/v1alpha1
            kind: EndpointPickerConfig
            plugins:
            - type: round-robin-picker
            schedulingProfiles:
            - name: default
              plugins:
              - pluginRef: round-robin-picker
            """
        var dataPlane = DataPlaneConfiguration()
        dataPlane.retryOnReset = retryOnReset
        let stack = try await GatewayStack.start(
            pods: 2, manifests: GatewayStack.poolYAML + roundRobin, dataPlane: dataPlane, extraEndpoints: ["127.0.0.1:\(dropping.port)"])
        defer { Task { await stack.stop() } }
        var refused = 0
        for index in 0..<6 {
            let response = try await stack.post("/v1/completions", #"{"model": "meta-llama/Meta-Llama-3-8B", "prompt": "Hi \#(index)", "max_tokens": 2}"#)
            if response.servedBy == "127.0.0.1:\(dropping.port)" {
                refused += 1
                #expect(!retryOnReset)
                #expect(response.status == 503)
                #expect(response.json?["error"]?["message"]?.string?.hasPrefix("upstream connect error or disconnect/reset before headers. reset reason: connection termination") == true)
            } else {
                #expect(response.status == 200)
                #expect(response.servedBy == stack.address(of: 0) || response.servedBy == stack.address(of: 1))
            }
        }
        #expect(retryOnReset ? refused == 0 : refused >= 1)
        #expect(dropping.droppedRequests.withLockedValue { $0 } >= 1, "the round robin never reached the dropping endpoint")
    }
}
}

/// Serves idle vLLM metrics on GET /metrics and closes the connection on any other request,
/// before a byte of response: a pod that dies as each request reaches it.
struct DroppingModelServer {
    let channel: Channel
    let droppedRequests: NIOLockedValueBox<Int>
    var port: Int { channel.localAddress!.port! }

    static func start() async throws -> DroppingModelServer {
        let dropped = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeMetricsHandler { context in
                        dropped.withLockedValue { $0 += 1 }
                        context.close(promise: nil)
                    })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return DroppingModelServer(channel: channel, droppedRequests: dropped)
    }
}

/// Answers GET /metrics with an idle vLLM page; hands every other request to `other`.
final class FakeMetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var uri = ""
    private let other: (ChannelHandlerContext) -> Void

    init(other: @escaping (ChannelHandlerContext) -> Void) { self.other = other }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): uri = head.uri
        case .body: break
        case .end:
            guard uri == "/metrics" else { return other(context) }
            let body = ByteBuffer(string: """
                vllm:num_requests_waiting{model_name="m"} 0.0
                vllm:num_requests_running{model_name="m"} 0.0
                vllm:kv_cache_usage_perc{model_name="m"} 0.0

                """)
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: String(body.readableBytes))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
