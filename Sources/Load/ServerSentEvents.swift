#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Splits a server-sent event stream into its `data:` payloads, whatever the chunking.
struct ServerSentEvents {
    private var pending: ByteBuffer?

    /// Only the unread tail (a partial event) is kept: appending to everything read so far
    /// would copy the whole stream once per chunk (events are slices of the same storage).
    mutating func append(_ chunk: inout ByteBuffer) {
        guard var buffer = pending else {
            pending = chunk
            return
        }
        pending = nil
        buffer.discardReadBytes()
        buffer.writeBuffer(&chunk)
        pending = buffer
    }

    /// One event: its data (without `data: ` and the blank line), and its `event:` name when it
    /// has one (the Responses API names every event; chat and completion streams name none).
    struct Event {
        var name: String?
        var data: ByteBuffer
    }

    /// The next complete event with data, if one has arrived.
    mutating func next() -> Event? {
        while var buffer = pending, buffer.readableBytes > 0 {
            guard let length = Self.offset(of: Self.blankLine, in: buffer) else { return nil }
            var event = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: Self.blankLine.count)
            pending = buffer.readableBytes > 0 ? buffer : nil
            var name: String?
            if event.readableBytesView.starts(with: Self.eventField), let end = Self.offset(of: Self.newline, in: event) {
                name = event.getString(at: event.readerIndex + Self.eventField.count, length: end - Self.eventField.count)
                event.moveReaderIndex(forwardBy: end + 1)
            }
            if event.readableBytesView.starts(with: Self.dataField) {
                event.moveReaderIndex(forwardBy: Self.dataField.count)
                return Event(name: name, data: event)
            }
            // A comment or another field: not a payload.
        }
        return nil
    }

    private static let blankLine: [UInt8] = Array("\n\n".utf8)
    private static let newline: [UInt8] = Array("\n".utf8)
    private static let eventField: [UInt8] = Array("event: ".utf8)
    private static let dataField: [UInt8] = Array("data: ".utf8)

    /// The needles looked for in every event, made once.
    static let errorKey: [UInt8] = Array(#""error""#.utf8)
    static let emptyChoices: [[UInt8]] = [Array(#""choices":[]"#.utf8), Array(#""choices": []"#.utf8)]

    /// A JSON member named by `needle` (`"key"`, quotes included) in an event, not inside a
    /// string (where its quotes would be escaped).
    static func containsKey(_ needle: [UInt8], in event: ByteBuffer) -> Bool {
        var start = 0
        while let found = offset(of: needle, in: event, from: start) {
            if found == 0 || event.getInteger(at: event.readerIndex + found - 1, as: UInt8.self) != UInt8(ascii: "\\") { return true }
            start = found + 1
        }
        return false
    }

    /// Where `needle` first occurs in the readable bytes, at or after `start` (memchr for its
    /// first byte, then a compare): every event of every stream passes through here, and the
    /// standard library's generic searches cost the load client more than the server it
    /// measures spends producing the events.
    static func offset(of needle: [UInt8], in buffer: ByteBuffer, from start: Int = 0) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress, !needle.isEmpty, bytes.count - start >= needle.count else { return nil }
            let last = bytes.count - needle.count
            var index = start
            while index <= last {
                guard let hit = memchr(base + index, Int32(needle[0]), last - index + 1) else { return nil }
                let offset = base.distance(to: UnsafeRawPointer(hit))
                if needle.withUnsafeBytes({ memcmp(hit, $0.baseAddress!, needle.count) }) == 0 { return offset }
                index = offset + 1
            }
            return nil
        }
    }
}
