import InferenceAPI
@testable import Load
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

struct LoadClientTests {
    /// Counts the connections a listener accepts.
    final class AcceptCounter: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Channel
        typealias InboundOut = Channel
        let count = NIOLockedValueBox(0)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            count.withLockedValue { $0 += 1 }
            context.fireChannelRead(data)
        }
    }

    @Test func aServerThatClosesNewConnectionsAtOnceIsRecordedAsNoAnswerAfterOneRetry() async throws {
        // A listener over its connection limit: every connection is closed as it is accepted.
        let counter = AcceptCounter()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(counter) }
                    .flatMap { AcceptGuard.install(on: channel, limit: 0) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let client = LoadClient(host: "127.0.0.1", port: server.localAddress!.port!, group: MultiThreadedEventLoopGroup.singleton)
        defer { client.close() }

        let record = await client.send(LoadRequest(stream: "s", body: ByteBuffer(string: #"{"model":"m","prompt":"x"}"#), streaming: false))
        guard case .connectionFailed = record.outcome else {
            Issue.record("expected no answer, got \(record.outcome)")
            return
        }
        #expect((1...2).contains(counter.count.withLockedValue { $0 }), "one connection, and at most one retry on a fresh one")
    }

    @Test func namedEventsAreReadWithTheirNamesWhateverTheChunking() {
        let stream = "event: response.created\ndata: {\"a\":1}\n\n: a comment\n\ndata: {\"b\":2}\n\n"
            + "event: response.completed\ndata: {\"c\":3}\n\n"
        let bytes = Array(stream.utf8)
        for size in [1, 3, 7, bytes.count] {
            var events = ServerSentEvents()
            var read: [String] = []
            for start in stride(from: 0, to: bytes.count, by: size) {
                var chunk = ByteBuffer(bytes: bytes[start..<min(start + size, bytes.count)])
                events.append(&chunk)
                while let event = events.next() { read.append("\(event.name ?? "-") \(String(buffer: event.data))") }
            }
            #expect(read == [#"response.created {"a":1}"#, #"- {"b":2}"#, #"response.completed {"c":3}"#], "chunks of \(size)")
        }
    }
}

