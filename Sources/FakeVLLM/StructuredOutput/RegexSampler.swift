import InferenceAPI

/// Draws strings that a regular expression matches in full, for vLLM's `structured_outputs.regex`
/// and JSON Schema's `pattern`. Only the subset guided-decoding users send is accepted (literals,
/// escapes, classes, `.`, groups, alternation, quantifiers, end anchors); anything else is refused
/// at init, because a construct the sampler does not understand could yield a non-matching string.
public struct RegexSampler: Sendable {
    /// The pattern as the client sent it.
    public let pattern: String
    private let root: Term
    /// Shortest and longest string `sample` can return, in Unicode scalars.
    let lengthRange: ClosedRange<Int>

    /// Repetitions an unbounded quantifier (`*`, `+`, `{n,}`) may add past its minimum: enough
    /// to look varied, few enough that output stays short.
    static let extraRepetitions = 4
    /// Caps that keep hostile patterns from costing unbounded memory or stack.
    static let maxRepeat = 1_000
    static let maxOutputLength = 100_000
    static let maxNesting = 64
    static let maxPatternLength = 10_000

    /// One parsed piece of the pattern. Repetition bounds are already finite.
    fileprivate indirect enum Term: Sendable {
        case literal(Unicode.Scalar)
        case set(ScalarSet)
        case sequence([Term])
        case alternation([Term])
        case repetition(Term, min: Int, max: Int)
    }

    public init(pattern: String) throws(StructuredOutputError) {
        guard pattern.unicodeScalars.count <= Self.maxPatternLength else {
            throw StructuredOutputError("regex is longer than the emulator's limit of \(Self.maxPatternLength) characters")
        }
        var parser = Parser(scalars: Array(pattern.unicodeScalars), pattern: pattern)
        let root = try parser.parseAlternation(depth: 0)
        if parser.index < parser.scalars.count {  // only an unmatched ')' stops the top level early
            throw parser.refuse("unmatched ')'")
        }
        let range = Self.length(of: root)
        guard range.upperBound <= Self.maxOutputLength else {
            throw StructuredOutputError("regex '\(pattern)' allows strings longer than the emulator's limit of \(Self.maxOutputLength) characters")
        }
        self.pattern = pattern
        self.root = root
        self.lengthRange = range
    }

    /// A string the whole pattern matches.
    public func sample(using generator: inout SplitMix64) -> String {
        var output = String.UnicodeScalarView()
        Self.emit(root, into: &output, using: &generator)
        return String(output)
    }

    private static func emit(_ term: Term, into output: inout String.UnicodeScalarView, using generator: inout SplitMix64) {
        switch term {
        case .literal(let scalar): output.append(scalar)
        case .set(let set): output.append(set.sample(using: &generator))
        case .sequence(let terms): for term in terms { emit(term, into: &output, using: &generator) }
        case .alternation(let branches):
            emit(branches[Int.random(in: 0..<branches.count, using: &generator)], into: &output, using: &generator)
        case .repetition(let term, let low, let high):
            for _ in 0..<Int.random(in: low...high, using: &generator) { emit(term, into: &output, using: &generator) }
        }
    }

    /// Length bounds of what `emit` produces, saturating so hostile nesting cannot overflow.
    private static func length(of term: Term) -> ClosedRange<Int> {
        let cap = maxOutputLength + 1
        switch term {
        case .literal, .set: return 1...1
        case .sequence(let terms):
            var low = 0, high = 0
            for term in terms {
                let range = length(of: term)
                low = min(cap, low + range.lowerBound)
                high = min(cap, high + range.upperBound)
            }
            return low...high
        case .alternation(let branches):
            let ranges = branches.map(length(of:))
            return (ranges.map(\.lowerBound).min() ?? 0)...(ranges.map(\.upperBound).max() ?? 0)
        case .repetition(let term, let low, let high):
            let range = length(of: term)
            let multiply = { (a: Int, b: Int) in a.multipliedReportingOverflow(by: b).overflow ? cap : min(cap, a * b) }
            return multiply(range.lowerBound, low)...multiply(range.upperBound, high)
        }
    }
}

/// A set of scalars for a class, `.` or `\d`-style escape, kept as sorted disjoint ranges.
fileprivate struct ScalarSet: Sendable {
    var ranges: [ClosedRange<UInt32>]

    static let printable = ScalarSet(ranges: [0x20...0x7E])
    static let digits = ScalarSet(ranges: [0x30...0x39])
    static let word = ScalarSet(ranges: [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A])
    static let space = ScalarSet(ranges: [0x09...0x0D, 0x20...0x20])

    init(ranges: [ClosedRange<UInt32>]) {
        // Surrogates are not scalars; dropping them here keeps `sample` from ever needing a fallback.
        let cleaned = ranges.flatMap { range -> [ClosedRange<UInt32>] in
            var parts: [ClosedRange<UInt32>] = []
            if range.lowerBound < 0xD800 { parts.append(range.lowerBound...min(range.upperBound, 0xD7FF)) }
            if range.upperBound > 0xDFFF { parts.append(max(range.lowerBound, 0xE000)...range.upperBound) }
            return parts
        }.sorted { $0.lowerBound < $1.lowerBound }
        var merged: [ClosedRange<UInt32>] = []
        for range in cleaned {
            if let last = merged.last, range.lowerBound <= last.upperBound &+ 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        self.ranges = merged
    }

    var isEmpty: Bool { ranges.isEmpty }

    /// Printable ASCII minus these scalars: what a negated class or `\D` draws from.
    var complementInPrintable: ScalarSet {
        var result: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0x20
        for range in ranges where range.upperBound >= next && range.lowerBound <= 0x7E {
            if range.lowerBound > next { result.append(next...(range.lowerBound - 1)) }
            next = range.upperBound + 1
        }
        if next <= 0x7E { result.append(next...0x7E) }
        return ScalarSet(ranges: result)
    }

    /// A member, preferring printable ASCII when the set has any, so that `\s` reads as a space
    /// rather than a vertical tab.
    func sample(using generator: inout SplitMix64) -> Unicode.Scalar {
        let printable = ranges.compactMap { range -> ClosedRange<UInt32>? in
            let low = max(range.lowerBound, 0x20), high = min(range.upperBound, 0x7E)
            return low <= high ? low...high : nil
        }
        let pool = printable.isEmpty ? ranges : printable
        let total = pool.reduce(UInt64(0)) { $0 + UInt64($1.upperBound - $1.lowerBound) + 1 }
        var pick = UInt64.random(in: 0..<max(total, 1), using: &generator)
        for range in pool {
            let size = UInt64(range.upperBound - range.lowerBound) + 1
            if pick < size { return Unicode.Scalar(range.lowerBound + UInt32(pick)) ?? " " }
            pick -= size
        }
        return " "  // unreachable: sets are checked non-empty at parse time
    }
}

/// Recursive-descent parser over the pattern's scalars; nesting is capped so that hostile input
/// cannot exhaust the stack.
private struct Parser {
    let scalars: [Unicode.Scalar]
    let pattern: String
    var index = 0
    typealias Term = RegexSampler.Term

    init(scalars: [Unicode.Scalar], pattern: String) {
        self.scalars = scalars
        self.pattern = pattern
    }

    func refuse(_ what: String) -> StructuredOutputError {
        StructuredOutputError("regex '\(pattern)': \(what) is not supported by the emulator")
    }

    var peek: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }
    func peek(_ offset: Int) -> Unicode.Scalar? { index + offset < scalars.count ? scalars[index + offset] : nil }

    mutating func parseAlternation(depth: Int) throws(StructuredOutputError) -> Term {
        guard depth <= RegexSampler.maxNesting else { throw refuse("nesting deeper than \(RegexSampler.maxNesting) groups") }
        var branches = [try parseSequence(depth: depth)]
        while peek == "|" {
            index += 1
            branches.append(try parseSequence(depth: depth))
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseSequence(depth: Int) throws(StructuredOutputError) -> Term {
        var terms: [Term] = []
        while let scalar = peek, scalar != "|", scalar != ")" {
            index += 1
            let atom: Term
            switch scalar {
            case "^":
                // Generation always covers the whole string, so an anchor where a branch starts
                // changes nothing; anywhere else it would make the branch unmatchable.
                guard depth == 0, terms.isEmpty else { throw refuse("'^' inside the pattern") }
                continue
            case "$":
                guard depth == 0, peek == nil || peek == "|" else { throw refuse("'$' inside the pattern") }
                continue
            case "(": atom = try parseGroup(depth: depth)
            case "[": atom = .set(try parseClass())
            case ".": atom = .set(.printable)
            case "\\": atom = try parseEscape(inClass: false)
            case "*", "+", "?": throw refuse("quantifier '\(scalar)' with nothing to repeat")
            case "{", "}": throw refuse("unescaped '\(scalar)'")
            default: atom = .literal(scalar)
            }
            terms.append(try parseQuantifier(on: atom))
        }
        return terms.count == 1 ? terms[0] : .sequence(terms)
    }

    mutating func parseGroup(depth: Int) throws(StructuredOutputError) -> Term {
        if peek == "?" {
            switch (peek(1), peek(2)) {
            case (":", _): index += 2
            case ("=", _), ("!", _), ("<", "="), ("<", "!"): throw refuse("lookaround '(?\(peek(1) ?? " ")'")
            case ("<", _), ("P", "<"):
                // A named group generates what an unnamed one does; only the name is skipped.
                index += peek(1) == "P" ? 3 : 2
                while let scalar = peek, scalar != ">" {
                    guard scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" else {
                        throw refuse("group name character '\(scalar)'")
                    }
                    index += 1
                }
                guard peek == ">" else { throw refuse("unterminated group name") }
                index += 1
            case ("P", _): throw refuse("backreference '(?P='")
            default: throw refuse("group syntax '(?\(peek(1).map(String.init) ?? "")'")
            }
        }
        let inner = try parseAlternation(depth: depth + 1)
        guard peek == ")" else { throw refuse("unclosed '('") }
        index += 1
        return inner
    }

    mutating func parseQuantifier(on atom: Term) throws(StructuredOutputError) -> Term {
        let extra = RegexSampler.extraRepetitions
        var low: Int, high: Int
        switch peek {
        case "*": index += 1; (low, high) = (0, extra)
        case "+": index += 1; (low, high) = (1, 1 + extra)
        case "?": index += 1; (low, high) = (0, 1)
        case "{":
            index += 1
            guard let first = parseNumber() else { throw refuse("'{' without a repetition count") }
            low = first
            high = first
            if peek == "," {
                index += 1
                if let second = parseNumber() { high = second } else { high = first + extra }
            }
            guard peek == "}" else { throw refuse("unterminated '{'") }
            index += 1
            guard low <= high else { throw refuse("repetition {\(low),\(high)} with minimum above maximum") }
            guard high <= RegexSampler.maxRepeat else { throw refuse("repetition count above \(RegexSampler.maxRepeat)") }
        default: return atom
        }
        if peek == "?" { index += 1 }  // lazy: the language is the same
        if let next = peek, ["*", "+", "?", "{"].contains(next) {
            throw refuse(next == "+" ? "possessive quantifier" : "quantifier '\(next)' after a quantifier")
        }
        return .repetition(atom, min: low, max: high)
    }

    /// Decimal digits, or nil when there are none; values past the repeat cap saturate.
    mutating func parseNumber() -> Int? {
        var value: Int?
        while let scalar = peek, ("0"..."9").contains(scalar) {
            value = min((value ?? 0) * 10 + Int(scalar.value - 0x30), RegexSampler.maxRepeat + 1)
            index += 1
        }
        return value
    }

    mutating func parseClass() throws(StructuredOutputError) -> ScalarSet {
        var negated = false
        if peek == "^" { negated = true; index += 1 }
        if peek == "]" { throw refuse("']' first in a character class") }
        var ranges: [ClosedRange<UInt32>] = []
        while let scalar = peek, scalar != "]" {
            // ICU reads these as set operations and nested sets; ECMA as literals. Refusing keeps
            // the sampler and every validator in agreement.
            if scalar == "[" { throw refuse("'[' inside a character class") }
            if (scalar == "&" && peek(1) == "&") || (scalar == "-" && peek(1) == "-") {
                throw refuse("'\(scalar)\(scalar)' inside a character class")
            }
            let low = try parseClassAtom()
            if peek == "-", let after = peek(1), after != "]" {
                index += 1
                let high = try parseClassAtom()
                guard case .literal(let from) = low, case .literal(let to) = high else {
                    throw refuse("a range with a class escape as an end")
                }
                guard from.value <= to.value else { throw refuse("range '\(from)-\(to)' out of order") }
                ranges.append(from.value...to.value)
            } else if case .literal(let single) = low {
                ranges.append(single.value...single.value)
            } else if case .set(let set) = low {
                ranges += set.ranges
            }
        }
        guard peek == "]" else { throw refuse("unclosed '['") }
        index += 1
        let set = negated ? ScalarSet(ranges: ranges).complementInPrintable : ScalarSet(ranges: ranges)
        guard !set.isEmpty else { throw refuse("a character class that matches nothing printable") }
        return set
    }

    mutating func parseClassAtom() throws(StructuredOutputError) -> Term {
        guard let scalar = peek else { throw refuse("unclosed '['") }
        index += 1
        return scalar == "\\" ? try parseEscape(inClass: true) : .literal(scalar)
    }

    mutating func parseEscape(inClass: Bool) throws(StructuredOutputError) -> Term {
        guard let scalar = peek else { throw refuse("a trailing '\\'") }
        index += 1
        switch scalar {
        case "d": return .set(.digits)
        case "w": return .set(.word)
        case "s": return .set(.space)
        case "D": return .set(ScalarSet.digits.complementInPrintable)
        case "W": return .set(ScalarSet.word.complementInPrintable)
        case "S": return .set(ScalarSet.space.complementInPrintable)
        case "n": return .literal("\n")
        case "t": return .literal("\t")
        case "r": return .literal("\r")
        case "f": return .literal("\u{0C}")
        case "v": return .literal("\u{0B}")
        case "x": return .literal(try parseHex(count: 2))
        case "u": return .literal(try parseHex(count: 4))
        case "1"..."9", "k": throw refuse("backreference '\\\(scalar)'")
        case "b", "B", "A", "z", "Z", "G": throw refuse(inClass ? "'\\\(scalar)' in a class" : "anchor '\\\(scalar)'")
        case "p", "P": throw refuse("Unicode property '\\\(scalar)'")
        default:
            // Escaped punctuation stands for itself; an escaped letter or digit we do not know
            // might mean something else to the client's engine.
            guard scalar.isASCII, !scalar.properties.isAlphabetic, !("0"..."9").contains(scalar) else {
                throw refuse("escape '\\\(scalar)'")
            }
            return .literal(scalar)
        }
    }

    mutating func parseHex(count: Int) throws(StructuredOutputError) -> Unicode.Scalar {
        guard index + count <= scalars.count, scalars[index..<index + count].allSatisfy(\.properties.isASCIIHexDigit),
              let value = UInt32(String(String.UnicodeScalarView(scalars[index..<index + count])), radix: 16),
              let scalar = Unicode.Scalar(value)
        else { throw refuse("a malformed hex escape") }
        index += count
        return scalar
    }
}
