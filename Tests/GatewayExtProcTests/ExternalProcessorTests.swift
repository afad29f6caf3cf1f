import EnvoyAPI
import FakeVLLM
import Foundation
import Gateway
import GatewayExtProc
import GRPCCore
import GRPCInProcessTransport
import NIOCore
import SwiftProtobuf
import TestSupport
import Testing

/// The picker's ext_proc stream message by message, as Envoy would send it, through a real gRPC
/// client and server (in-process transport) and a picker over real pods.
@Suite(.serialized) struct ExternalProcessorTests {
    typealias Request = Envoy_Service_ExtProc_V3_ProcessingRequest
    typealias Response = Envoy_Service_ExtProc_V3_ProcessingResponse

    /// A picker over `pods` FakeVLLM pods, each on its own loopback address.
    static func withPicker(
        pods count: Int, manifests: String = EnvoyStack.poolYAML, _ body: (EndpointPicker, [String]) async throws -> Void
    ) async throws {
        let (pods, gateway) = try await EnvoyStack.picker(pods: count, manifests: manifests)
        let addresses = pods.map { "\($0.configuration.host):\($0.port)" }
        do {
            try await body(gateway.picker, addresses)
        } catch {
            try? await gateway.stop()
            for pod in pods { try? await pod.stop() }
            throw error
        }
        try? await gateway.stop()
        for pod in pods { try? await pod.stop() }
    }

    /// Sends `messages` on one stream, then ends it; every response.
    static func exchange(_ picker: EndpointPicker, _ messages: [Request]) async throws -> [Response] {
        let transport = InProcessTransport()
        return try await withGRPCServer(transport: transport.server, services: [ExternalProcessor(picker: picker, maxBodyBytes: 1 << 20)]) { _ in
            try await withGRPCClient(transport: transport.client) { client in
                try await Envoy_Service_ExtProc_V3_ExternalProcessor.Client(wrapping: client).process { writer in
                    for message in messages { try await writer.write(message) }
                } onResponse: { response in
                    var received: [Response] = []
                    for try await message in response.messages { received.append(message) }
                    return received
                }
            }
        }
    }

    static func headers(_ fields: [(String, String)], endOfStream: Bool = false, response: Bool = false) -> Request {
        var headers = Envoy_Service_ExtProc_V3_HttpHeaders()
        headers.headers.headers = fields.map { name, value in
            var header = Envoy_Config_Core_V3_HeaderValue()
            header.key = name
            header.rawValue = Data(value.utf8)
            return header
        }
        headers.endOfStream = endOfStream
        var request = Request()
        if response { request.responseHeaders = headers } else { request.requestHeaders = headers }
        return request
    }

    static func body(_ text: String, endOfStream: Bool, response: Bool = false) -> Request {
        var body = Envoy_Service_ExtProc_V3_HttpBody()
        body.body = Data(text.utf8)
        body.endOfStream = endOfStream
        var request = Request()
        if response { request.responseBody = body } else { request.requestBody = body }
        return request
    }

    static let post = [(":method", "POST"), (":path", "/v1/completions"), ("content-type", "application/json")]

    static func completion(_ model: String = EnvoyStack.model, prompt: String) -> String {
        var body = ByteBuffer()
        body.writeJSON(.object(["model": .string(model), "prompt": .string(prompt), "max_tokens": .integer(1)]))
        return String(buffer: body)
    }

    static func setHeaders(_ response: Response) -> [(String, String)] {
        let mutation = response.requestHeaders.hasResponse ? response.requestHeaders.response.headerMutation : response.responseHeaders.response.headerMutation
        return mutation.setHeaders.map { ($0.header.key, String(decoding: $0.header.rawValue, as: UTF8.self)) }
    }

    @Test func theBodysEndBringsThePickThenTheBodyInPiecesAndADuplicateEndIsIgnored() async throws {
        try await Self.withPicker(pods: 2) { picker, addresses in
            let body = Self.completion(prompt: String(repeating: "word ", count: 30_000))
            let half = body.index(body.startIndex, offsetBy: body.utf8.count / 2)
            let headers = Self.post + [("x-gateway-inference-objective", "none"), ("x-custom", "kept")]
            let tail = String(body[half...])
            let responses = try await Self.exchange(picker, [
                Self.headers(headers), Self.body(String(body[..<half]), endOfStream: false), Self.body(tail, endOfStream: true),
                Self.body(tail, endOfStream: true),
            ])
            // The headers response, then ⌈150,000 / 62,000⌉ = 3 body pieces; nothing for the duplicate.
            #expect(responses.count == 4)
            guard responses.count == 4 else { return }
            let first = responses[0]
            #expect(first.requestHeaders.response.clearRouteCache_p)
            let set = Self.setHeaders(first)
            #expect(set.first?.0 == "x-gateway-destination-endpoint")
            #expect(addresses.contains(set.first?.1 ?? ""))
            #expect(set.dropFirst().first ?? ("", "") == ("Content-Length", String(body.utf8.count)))
            #expect(set.contains { $0 == ("x-custom", "kept") } && set.contains { $0 == (":path", "/v1/completions") })
            #expect(!set.contains { $0.0 == "x-gateway-inference-objective" })
            #expect(first.requestHeaders.response.headerMutation.setHeaders.allSatisfy { !$0.hasAppend && $0.appendAction == .appendIfExistsOrAdd })
            let metadata = first.dynamicMetadata.fields["envoy.lb"]?.structValue.fields["x-gateway-destination-endpoint"]?.stringValue
            #expect(metadata == set.first?.1)
            let pieces = responses.dropFirst().map(\.requestBody.response.bodyMutation.streamedResponse)
            #expect(pieces.map(\.body.count) == [62_000, 62_000, body.utf8.count - 124_000])
            #expect(pieces.map(\.endOfStream) == [false, false, true])
            #expect(String(decoding: pieces.map(\.body).reduce(Data(), +), as: UTF8.self) == body)
        }
    }

    @Test func theSubsetHintNarrowsThePickAndAnEmptyOneIs503() async throws {
        try await Self.withPicker(pods: 2) { picker, addresses in
            func hinted(_ subset: [String]) -> Request {
                var message = Self.body(Self.completion(prompt: "Hi"), endOfStream: true)
                message.metadataContext.filterMetadata["envoy.lb.subset_hint"] = Google_Protobuf_Struct(fields: [
                    "x-gateway-destination-endpoint-subset": Google_Protobuf_Value(listValue: Google_Protobuf_ListValue(values: subset.map {
                        Google_Protobuf_Value(stringValue: $0)
                    })),
                ])
                return message
            }
            for _ in 0..<4 {
                let narrowed = try await Self.exchange(picker, [Self.headers(Self.post), hinted([addresses[1]])])
                #expect(narrowed.first.map(Self.setHeaders)?.first?.1 == addresses[1])
            }
            let empty = try await Self.exchange(picker, [Self.headers(Self.post), hinted([])])
            #expect(empty.count == 1)
            #expect(empty.first?.immediateResponse.status.code == .serviceUnavailable)
            #expect(empty.first.map { String(decoding: $0.immediateResponse.body, as: UTF8.self) }
                == "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request")
        }
    }

    @Test func bodilessRequestsGoAnywhereAndWithNoPodGet500() async throws {
        try await Self.withPicker(pods: 1) { picker, addresses in
            let responses = try await Self.exchange(picker, [Self.headers([(":method", "GET"), (":path", "/v1/models")], endOfStream: true)])
            #expect(responses.count == 1)
            #expect(responses.first.map(Self.setHeaders)?.map(\.0) == ["x-gateway-destination-endpoint"])
            #expect(responses.first.map(Self.setHeaders)?.first?.1 == addresses[0])
        }
        try await Self.withPicker(pods: 0) { picker, _ in
            let responses = try await Self.exchange(picker, [Self.headers([(":method", "GET"), (":path", "/v1/models")], endOfStream: true)])
            #expect(responses.first?.immediateResponse.status.code == .internalServerError)
            #expect(responses.first.map { String(decoding: $0.immediateResponse.body, as: UTF8.self) }
                == "inference error: Internal - no pods available in datastore")
        }
    }

    @Test func unreadableBodiesAreRefusedWithGIEsWords() async throws {
        try await Self.withPicker(pods: 1) { picker, _ in
            let cases = [
                ("{\"model\":", "inference error: BadRequest - error unmarshaling request body"),
                (#"{"model":"m","max_tokens":1}"#, "inference error: BadRequest - invalid completions request: must have prompt field"),
                (#"{"prompt":"x"}"#, "inference error: BadRequest - model not found in request body"),
            ]
            for (body, refusal) in cases {
                let responses = try await Self.exchange(picker, [Self.headers(Self.post), Self.body(body, endOfStream: true)])
                #expect(responses.count == 1)
                #expect(responses.first?.immediateResponse.status.code == .badRequest)
                let text = responses.first.map { String(decoding: $0.immediateResponse.body, as: UTF8.self) } ?? ""
                #expect(text.hasPrefix(refusal), "\(text)")
                #expect(responses.first?.immediateResponse.hasHeaders == false)
            }
        }
    }

    @Test func aStreamsModelNameIsWrittenBackEvenSplitAcrossChunks() async throws {
        try await Self.withPicker(pods: 1, manifests: EnvoyStack.poolYAML + TestManifests.alias("assistant", to: EnvoyStack.model)) { picker, _ in
            let event = #"data: {"model":"\#(EnvoyStack.model)","choices":[]}"# + "\n\n"
            let split = event.index(event.startIndex, offsetBy: 16)
            let responses = try await Self.exchange(picker, [
                Self.headers(Self.post), Self.body(Self.completion("assistant", prompt: "Hi"), endOfStream: true),
                Self.headers([(":status", "200"), ("content-type", "text/event-stream")], response: true),
                Self.body(String(event[..<split]), endOfStream: false, response: true),
                Self.body(String(event[split...]), endOfStream: false, response: true),
                Self.body("data: [DONE]\n\n", endOfStream: true, response: true),
            ])
            let sent = responses.first.map { String(decoding: $0.requestBody.response.bodyMutation.streamedResponse.body, as: UTF8.self) }
            #expect(responses.count >= 4)
            let requestBody = responses.dropFirst().first.map { String(decoding: $0.requestBody.response.bodyMutation.streamedResponse.body, as: UTF8.self) }
            #expect(requestBody?.contains(#""model":"\#(EnvoyStack.model)""#) == true, "the pod is sent the target: \(sent ?? "")")
            let headers = responses.first { $0.responseHeaders.hasResponse }.map(Self.setHeaders)
            #expect(headers?.first ?? ("", "") == ("x-went-into-resp-headers", "true"))
            let pieces = responses.filter { $0.responseBody.hasResponse }.map(\.responseBody.response.bodyMutation.streamedResponse)
            #expect(String(decoding: pieces.map(\.body).reduce(Data(), +), as: UTF8.self)
                == #"data: {"model":"assistant","choices":[]}"# + "\n\ndata: [DONE]\n\n")
            #expect(pieces.last?.endOfStream == true)
            #expect(pieces.dropLast().allSatisfy { !$0.endOfStream })
        }
    }
}
