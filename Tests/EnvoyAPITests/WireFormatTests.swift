import EnvoyAPI
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing

/// The committed protos speak Envoy's wire format: messages encode to the bytes Envoy's field
/// numbers give (written out by hand below) and the service has Envoy's method path.
struct WireFormatTests {
    typealias Response = Envoy_Service_ExtProc_V3_ProcessingResponse
    typealias Request = Envoy_Service_ExtProc_V3_ProcessingRequest

    @Test func theMethodPathsAreEnvoysAndGRPCs() {
        #expect(Envoy_Service_ExtProc_V3_ExternalProcessor.Method.Process.descriptor.fullyQualifiedMethod == "envoy.service.ext_proc.v3.ExternalProcessor/Process")
        #expect(Envoy_Service_ExtProc_V3_ExternalProcessor.Method.Process.descriptor.type == .bidirectionalStreaming)
        #expect(Grpc_Health_V1_Health.Method.Check.descriptor.fullyQualifiedMethod == "grpc.health.v1.Health/Check")
        #expect(Grpc_Health_V1_Health.Method.Watch.descriptor.fullyQualifiedMethod == "grpc.health.v1.Health/Watch")
    }

    /// The picker's answer to a request body: request headers mutated, route cache cleared.
    @Test func aHeadersResponseEncodesAsEnvoyReadsIt() throws {
        var response = Response()
        var common = Envoy_Service_ExtProc_V3_CommonResponse()
        common.clearRouteCache_p = true  // swift-protobuf renames a field that starts with "clear"
        var header = Envoy_Config_Core_V3_HeaderValueOption()
        header.header.key = "x"
        header.header.rawValue = Data("1.2.3.4:80".utf8)
        header.appendAction = .overwriteIfExistsOrAdd
        common.headerMutation.setHeaders = [header]
        response.requestHeaders.response = common
        // HeaderValue: key (1) "x", raw_value (3) "1.2.3.4:80".
        let value: [UInt8] = [0x0a, 0x01, 0x78, 0x1a, 0x0a] + Array("1.2.3.4:80".utf8)
        // HeaderValueOption: header (1), append_action (3) = 2.
        let option: [UInt8] = [0x0a, UInt8(value.count)] + value + [0x18, 0x02]
        // HeaderMutation: set_headers (1).
        let mutation: [UInt8] = [0x0a, UInt8(option.count)] + option
        // CommonResponse: header_mutation (2), clear_route_cache (5).
        let commonBytes: [UInt8] = [0x12, UInt8(mutation.count)] + mutation + [0x28, 0x01]
        // HeadersResponse: response (1); ProcessingResponse: request_headers (1).
        let headers: [UInt8] = [0x0a, UInt8(commonBytes.count)] + commonBytes
        let expected: [UInt8] = [0x0a, UInt8(headers.count)] + headers
        #expect(Array(try response.serializedBytes() as [UInt8]) == expected)
    }

    /// A refusal: 429 with GIE's body, as an immediate response (field 7).
    @Test func anImmediateResponseEncodesAsEnvoyReadsIt() throws {
        var response = Response()
        response.immediateResponse.status.code = .tooManyRequests
        response.immediateResponse.body = Data("x".utf8)
        // HttpStatus: code (1) = 429 (varint 0xAD 0x03); ImmediateResponse: status (1), body (3).
        let immediate: [UInt8] = [0x0a, 0x03, 0x08, 0xad, 0x03, 0x1a, 0x01, 0x78]
        #expect(Array(try response.serializedBytes() as [UInt8]) == [0x3a, UInt8(immediate.count)] + immediate)
    }

    /// The destination in dynamic metadata (field 8): {"envoy.lb": {"x-gateway-destination-endpoint": …}}.
    @Test func dynamicMetadataIsAStructInField8() throws {
        var response = Response()
        response.dynamicMetadata = Google_Protobuf_Struct(fields: [
            "envoy.lb": Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: ["x-gateway-destination-endpoint": Google_Protobuf_Value(stringValue: "1.2.3.4:80")]))
        ])
        let bytes = Array(try response.serializedBytes() as [UInt8])
        #expect(bytes.first == 0x42)
        let back = try Response(serializedBytes: bytes)
        #expect(back.dynamicMetadata.fields["envoy.lb"]?.structValue.fields["x-gateway-destination-endpoint"]?.stringValue == "1.2.3.4:80")
    }

    /// What Envoy sends with FULL_DUPLEX_STREAMED: a body chunk (field 4) that ends the stream,
    /// and the subset hint in the request's metadata context (field 8).
    @Test func aRequestBodyAndItsMetadataDecodeFromEnvoysBytes() throws {
        // HttpBody: body (1) "{}", end_of_stream (2) true.
        let body: [UInt8] = [0x0a, 0x02, 0x7b, 0x7d, 0x10, 0x01]
        let request = try Request(serializedBytes: [0x22, UInt8(body.count)] + body)
        #expect(request.requestBody.body == Data("{}".utf8) && request.requestBody.endOfStream)
        if case .requestBody = request.request {} else { Issue.record("not a request body: \(request)") }

        var hinted = Request()
        hinted.metadataContext.filterMetadata["envoy.lb.subset_hint"] = Google_Protobuf_Struct(fields: [
            "x-gateway-destination-endpoint-subset": Google_Protobuf_Value(listValue: Google_Protobuf_ListValue(values: [Google_Protobuf_Value(stringValue: "1.2.3.4:80")]))
        ])
        let bytes = Array(try hinted.serializedBytes() as [UInt8])
        #expect(bytes.first == 0x42)  // field 8, length-delimited
        #expect(try Request(serializedBytes: bytes) == hinted)
    }

    /// Envoy 1.37's end of stream without a message (HttpBody field 3) reaches the processor.
    @Test func anEndOfStreamWithoutAMessageDecodes() throws {
        let request = try Request(serializedBytes: [0x22, 0x02, 0x18, 0x01] as [UInt8])
        #expect(request.requestBody.endOfStreamWithoutMessage && request.requestBody.body.isEmpty)
    }
}
