import NIOCore

/// A parsed JSON document. Request bodies are small and read once, so a plain tree is enough;
/// integers stay integers so that `"max_tokens": 1.5` can be told apart from `16`, and objects
/// keep their keys in order, as Python's `json` does (validation messages echo the input).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The JSON type name used in validation messages ("string", "integer", …).
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }
}

/// A JSON object's members in document order. A repeated key keeps its first position and its
/// last value, as a Python dict built by `json.loads` does. Equality ignores order.
extension JSONValue {
    /// The integer, when this is one.
    public var int: Int? { if case .integer(let value) = self { value } else { nil } }
    /// The string, when this is one.
    public var string: String? { if case .string(let value) = self { value } else { nil } }
    /// The items, when this is an array.
    public var array: [JSONValue]? { if case .array(let value) = self { value } else { nil } }
    /// The number, integer or not, when this is one.
    public var number: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }
}

public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral, Sequence {
    public private(set) var members: [(key: String, value: JSONValue)] = []
    /// Positions by key, once an object has more than a few members: a body with a million
    /// keys must not cost a million scans of the members (it stalled a pod for minutes).
    private var positions: [String: Int]?
    private static let indexedFrom = 16

    public init() {}

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    private func position(of key: String) -> Int? {
        if let positions { return positions[key] }
        return members.firstIndex { $0.key == key }
    }

    /// As Python's dict: a repeated key keeps its first place and takes the last value.
    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { members[$0].value } }
        set {
            if let index = position(of: key) {
                if let newValue {
                    members[index].value = newValue
                } else {
                    members.remove(at: index)
                    reindex()
                }
            } else if let newValue {
                members.append((key, newValue))
                if positions != nil { positions![key] = members.count - 1 } else { reindex() }
            }
        }
    }

    /// Keys are unique (every member goes through the subscript), so positions map one to one.
    private mutating func reindex() {
        positions = members.count >= Self.indexedFrom ? Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1.key, $0) }) : nil
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map(\.key) }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> { members.makeIterator() }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.count == rhs.count && lhs.members.allSatisfy { rhs[$0.key] == $0.value }
    }
}

/// Why a body is not JSON, in Python's `json` words ("Expecting value", "Extra data", …), at a
/// character offset, so errors can be reported as vLLM's FastAPI server reports them.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    /// Offset in characters (Unicode scalars) from the start of the body.
    public var offset: Int
    public var description: String { "\(reason) at character \(offset)" }
}

extension JSONValue {
    /// Parses one JSON document; trailing non-whitespace is an error.
    public static func parse(_ buffer: ByteBuffer) throws(JSONParseError) -> JSONValue {
        var result: Result<JSONValue, JSONParseError> = .success(.null)
        buffer.withUnsafeReadableBytes { bytes in
            var parser = JSONParser(bytes: bytes)
            result = Result { () throws(JSONParseError) in try parser.parseDocument() }
        }
        return try result.get()
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(ByteBuffer(string: text))
    }
}

/// A recursive-descent parser over raw bytes, following Python's `json` module: the same
/// grammar (a number ends where a valid number ends, so `01` is `0` followed by extra data),
/// the same error messages, and lone surrogates accepted (as U+FFFD). A depth limit keeps
/// hostile input from exhausting the stack.
struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    var index = 0
    var depth = 0
    static let maxDepth = 512

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        // A UTF-8 byte-order mark is skipped, as json.loads does for bytes.
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw fail("Extra data") }
        return value
    }

    /// An error at `position` (a byte offset), reported as a character offset.
    func fail(_ reason: String, at position: Int? = nil) -> JSONParseError {
        let end = min(position ?? index, bytes.count)
        var characters = 0
        for offset in 0..<end where bytes[offset] & 0xC0 != 0x80 { characters += 1 }
        return JSONParseError(reason: reason, offset: characters)
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): index += 1
            default: return
            }
        }
    }

    func isDigit(_ offset: Int) -> Bool {
        offset < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset])
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw fail("Expecting value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t") where matches("true"): index += 4; return .bool(true)
        case UInt8(ascii: "f") where matches("false"): index += 5; return .bool(false)
        case UInt8(ascii: "n") where matches("null"): index += 4; return .null
        // Python's json also reads these three.
        case UInt8(ascii: "N") where matches("NaN"): index += 3; return .double(.nan)
        case UInt8(ascii: "I") where matches("Infinity"): index += 8; return .double(.infinity)
        case UInt8(ascii: "-") where matches("-Infinity"): index += 9; return .double(-.infinity)
        case UInt8(ascii: "-") where isDigit(index + 1): return try parseNumber()
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("Expecting value")
        }
    }

    func matches(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] { return false }
        return true
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maxDepth { throw fail("Nesting too deep") }
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        var fields = JSONObject()
        try scanObject { (parser: inout JSONParser, key: String) throws(JSONParseError) in fields[key] = try parser.parseValue() }
        return .object(fields)
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        var elements: [JSONValue] = []
        try scanArray { (parser: inout JSONParser) throws(JSONParseError) in elements.append(try parser.parseValue()) }
        return .array(elements)
    }

    /// Reads an object, handing each member's value to `member` (the parser at its first byte).
    mutating func scanObject(_ member: (inout JSONParser, String) throws(JSONParseError) -> Void) throws(JSONParseError) {
        try enter()
        defer { depth -= 1 }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw fail("Expecting property name enclosed in double quotes")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("Expecting ':' delimiter") }
            index += 1
            skipWhitespace()
            try member(&self, key)
            skipWhitespace()
            guard index < bytes.count else { throw fail("Expecting ',' delimiter") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return
            } else {
                throw fail("Expecting ',' delimiter")
            }
        }
    }

    /// Reads an array, handing each element to `element` (the parser at its first byte).
    mutating func scanArray(_ element: (inout JSONParser) throws(JSONParseError) -> Void) throws(JSONParseError) {
        try enter()
        defer { depth -= 1 }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            try element(&self)
            skipWhitespace()
            guard index < bytes.count else { throw fail("Expecting ',' delimiter") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return
            } else {
                throw fail("Expecting ',' delimiter")
            }
        }
    }

    /// The longest valid number here; whatever follows is the caller's to judge.
    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        var isInteger = true
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "."), isDigit(index + 1) {
            isInteger = false
            index += 1
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            var exponent = index + 1
            if exponent < bytes.count, bytes[exponent] == UInt8(ascii: "+") || bytes[exponent] == UInt8(ascii: "-") { exponent += 1 }
            if isDigit(exponent) {
                isInteger = false
                index = exponent
                while isDigit(index) { index += 1 }
            }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if isInteger, let value = Int(text) { return .integer(value) }
        guard let value = Double(text) else { throw fail("Expecting value", at: start) }
        return .double(value)
    }

    mutating func parseString() throws(JSONParseError) -> String {
        let quote = index
        index += 1
        let start = index
        // Fast path: no escapes.
        index = plainRunEnd(from: index)
        if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            index += 1
            return text
        }
        // Escapes: runs of plain bytes are copied whole (byte by byte, a long prompt's text was
        // most of the gateway's time), escapes decoded between them.
        var scalars: [UInt8] = []
        scalars.reserveCapacity(index - start + 256)
        scalars.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let run = index
            index = plainRunEnd(from: index)
            if index > run { scalars.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[run..<index])) }
            guard index < bytes.count else { break }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                scalars.append(contentsOf: try readEscape(quote: quote).utf8)
            default:
                throw fail("Invalid control character at")
            }
        }
        throw fail("Unterminated string starting at", at: quote)
    }

    /// The escape at `index` (a backslash) read and decoded; `quote` is where its string began.
    mutating func readEscape(quote: Int) throws(JSONParseError) -> Unicode.Scalar {
        let escapeStart = index
        index += 1
        guard index < bytes.count else { throw fail("Unterminated string starting at", at: quote) }
        let escaped = bytes[index]
        index += 1
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return Unicode.Scalar(escaped)
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            var code = try parseHex4(escapeStart: escapeStart + 1)
            if (0xD800..<0xDC00).contains(code), index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                let save = index
                index += 2
                let low = try parseHex4(escapeStart: save + 1)
                if (0xDC00..<0xE000).contains(low) {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    index = save  // not a pair: the high surrogate stands alone
                }
            }
            // Python keeps a lone surrogate; a Swift string cannot, so it becomes U+FFFD.
            return Unicode.Scalar(code) ?? "\u{FFFD}"
        default:
            throw fail("Invalid \\escape", at: escapeStart)
        }
    }

    /// Where the string's plain bytes starting at `start` end: at a quote, a backslash or a
    /// control character (or the end). Thirty-two bytes a step, and the first special byte of
    /// a step found from its lane mask, not byte by byte: a long prompt is mostly plain, with an
    /// escape every line.
    func plainRunEnd(from start: Int) -> Int {
        var position = start
        if let base = bytes.baseAddress {
            while position + 32 <= bytes.count {
                let low = Self.specialBytes(base.loadUnaligned(fromByteOffset: position, as: SIMD16<UInt8>.self))
                let high = Self.specialBytes(base.loadUnaligned(fromByteOffset: position + 16, as: SIMD16<UInt8>.self))
                let either = low | high
                if either[0] | either[1] != 0 {
                    return low[0] | low[1] != 0 ? position + Self.firstByte(low) : position + 16 + Self.firstByte(high)
                }
                position += 32
            }
            if position + 16 <= bytes.count {
                let special = Self.specialBytes(base.loadUnaligned(fromByteOffset: position, as: SIMD16<UInt8>.self))
                if special[0] | special[1] != 0 { return position + Self.firstByte(special) }
                position += 16
            }
        }
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            position += 1
        }
        return position
    }

    /// 0xFF for each byte of the chunk that is a quote, a backslash or a control character, 0
    /// for the others (a mask's lanes), as two little-endian words: `any(_:)` would call out
    /// to a lane-by-lane reduction.
    @inline(__always)
    static func specialBytes(_ chunk: SIMD16<UInt8>) -> SIMD2<UInt64> {
        // Typed in full: `SIMD16(repeating:)` with its scalar inferred picks the generic
        // comparisons, a loop over the lanes, a hundred times slower.
        let quote = SIMD16<UInt8>(repeating: UInt8(ascii: "\"")), backslash = SIMD16<UInt8>(repeating: UInt8(ascii: "\\"))
        let special = (chunk .== quote) .| (chunk .== backslash) .| (chunk .< SIMD16<UInt8>(repeating: 0x20))
        return unsafeBitCast(special, to: SIMD2<UInt64>.self)
    }

    /// The index of the first special byte of a chunk that has one.
    @inline(__always)
    static func firstByte(_ special: SIMD2<UInt64>) -> Int {
        let low = UInt64(littleEndian: special[0])
        return low != 0 ? low.trailingZeroBitCount >> 3 : 8 + UInt64(littleEndian: special[1]).trailingZeroBitCount >> 3
    }

    mutating func parseHex4(escapeStart: Int) throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("Invalid \\uXXXX escape", at: escapeStart) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            value <<= 4
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value |= UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value |= UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value |= UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail("Invalid \\uXXXX escape", at: escapeStart)
            }
            index += 1
        }
        return value
    }
}

extension JSONValue: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}
