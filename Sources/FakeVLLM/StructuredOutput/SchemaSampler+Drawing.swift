import Foundation
import InferenceAPI

// MARK: - Drawing

extension SchemaSampler {
    func draw(_ index: Int, depth: Int, generator: inout SplitMix64, remaining: inout Int) -> JSONValue {
        guard checked.contains(index) else { return drawOnce(index, depth: depth, generator: &generator, remaining: &remaining) }
        for _ in 0..<8 {
            let value = drawOnce(index, depth: depth, generator: &generator, remaining: &remaining)
            if isValid(value, at: index) { return value }
        }
        return witnesses[index] ?? drawOnce(index, depth: depth, generator: &generator, remaining: &remaining)
    }

    func isValid(_ value: JSONValue, at index: Int) -> Bool {
        var validator = Validator(nodes: nodes)
        return validator.check(value, index, path: "$", report: false, depth: 0)
    }

    func drawOnce(_ index: Int, depth: Int, generator: inout SplitMix64, remaining: inout Int) -> JSONValue {
        let list = options[index]
        guard let cheapest = list.first else { return .null }  // callers only draw nodes with a finite cost
        let minimal = depth >= Self.minimalDepth || remaining <= 0
        remaining -= 1
        let pool = minimal ? list.prefix { $0.cost == cheapest.cost }.count : list.count
        let option = list[Int.random(in: 0..<pool, using: &generator)]
        let alternative = alternatives[index][option.alternative]
        let node = alternative.node
        switch alternative.kinds[option.kind] {
        case .null: return .null
        case .boolean: return .bool(Bool.random(using: &generator))
        case .choice:
            let choices = node.choices ?? []
            return choices.isEmpty ? .null : choices[Int.random(in: 0..<choices.count, using: &generator)]
        case .anything:
            // json_object mode and `{}`: an object reads like a model's answer; inside, a phrase.
            guard depth == 0 else { return .string(Self.phrase(using: &generator)) }
            return .object([Self.plausibleKeys[Int.random(in: 0..<Self.plausibleKeys.count, using: &generator)]: .string(Self.phrase(using: &generator))])
        case .integer(let kLow, let kHigh, let step):
            let width = max(1, 100 / step)
            let (low, high): (Int, Int)
            if kLow <= 0 && kHigh >= 0 {
                (low, high) = (kLow >= -width ? kLow : 0, min(kHigh, width))
            } else if kLow > 0 {
                (low, high) = (kLow, kLow + min(kHigh - kLow, width))
            } else {
                (low, high) = (kHigh - min(kHigh - kLow, width), kHigh)
            }
            return .integer(Int.random(in: low...high, using: &generator) * step)
        case .number(let low, let high):
            let (from, to) = Self.window(low, high, width: 100)
            var value = min(max(from + (to - from) * generator.nextUnit(), from), to)
            let cents = (value * 100).rounded() / 100  // two decimals read like a model's numbers
            if cents.isFinite, cents >= low, cents <= high { value = cents }
            return .double(value)
        case .numberStep(let kLow, let kHigh, let step):
            let (from, to) = Self.window(kLow, kHigh, width: max(1, (100 / step).rounded(.down)))
            let k = min(max((from + (to - from) * generator.nextUnit()).rounded(), from), to)
            // k / 100 is the double nearest 0.01·k (60.55); k * 0.01 may not be (60.550000000000004).
            let inverse = 1 / step
            return .double(inverse == inverse.rounded() ? k / inverse : k * step)
        case .string:
            if let pattern = node.pattern { return .string(pattern.sample(using: &generator)) }
            if let format = node.format, let text = Self.formatted(format, using: &generator) { return .string(text) }
            return .string(Self.phrase(minLength: node.minLength, maxLength: node.maxLength, using: &generator))
        case .array:
            return drawArray(node, depth: depth, minimal: minimal, generator: &generator, remaining: &remaining)
        case .object:
            return drawObject(alternative, depth: depth, minimal: minimal, generator: &generator, remaining: &remaining)
        }
    }

    /// A sub-range of [low, high] near zero (or the nearer bound) at most `width` wide.
    static func window(_ low: Double, _ high: Double, width: Double) -> (Double, Double) {
        if low <= 0 && high >= 0 { return (low >= -width ? low : 0, min(high, width)) }
        if low > 0 { return (low, min(high, low + width)) }
        return (max(low, high - width), high)
    }

    func drawArray(_ node: Node, depth: Int, minimal: Bool, generator: inout SplitMix64, remaining: inout Int) -> JSONValue {
        let low = node.minItems
        let high: Int
        if node.maxItems == Int.max {
            high = node.prefixItems.isEmpty ? max(low, 3) : max(low, node.prefixItems.count)
        } else {
            high = min(node.maxItems, max(low, 8))
        }
        let count: Int
        if minimal {
            count = low
        } else if !node.prefixItems.isEmpty {
            count = max(low, min(node.prefixItems.count, high))
        } else {
            count = Int.random(in: max(low, min(1, high))...high, using: &generator)
        }
        var items: [JSONValue] = []
        for position in 0..<count {
            let rule = node.itemRule(position)
            // A false or endlessly recursive position ends the array; the cost analysis made
            // sure that happens only past minItems.
            if let rule, options[rule].isEmpty { break }
            var value = JSONValue.null
            for _ in 0..<(node.uniqueItems ? 4 : 1) {
                value = rule.map { draw($0, depth: depth + 1, generator: &generator, remaining: &remaining) } ?? .string(Self.phrase(using: &generator))
                if !node.uniqueItems || !items.contains(where: { Self.same($0, value) }) { break }
            }
            if node.uniqueItems, items.contains(where: { Self.same($0, value) }) { continue }
            items.append(value)
        }
        return .array(items)
    }

    func drawObject(_ alternative: Alternative, depth: Int, minimal: Bool, generator: inout SplitMix64, remaining: inout Int) -> JSONValue {
        let node = alternative.node
        var object = JSONObject()
        let additionalDrawable = node.additional.map { !options[$0].isEmpty } ?? true
        if node.properties.isEmpty, node.required.isEmpty, !node.declaresProperties {
            if !minimal, additionalDrawable {
                let key = Self.plausibleKeys[Int.random(in: 0..<Self.plausibleKeys.count, using: &generator)]
                object[key] = node.additional.map { draw($0, depth: depth + 1, generator: &generator, remaining: &remaining) }
                    ?? .string(Self.phrase(using: &generator))
            }
            return .object(object)
        }
        for (name, rule) in node.properties where !options[rule].isEmpty {
            if alternative.required.contains(name) || (!minimal && Bool.random(using: &generator)) {
                object[name] = draw(rule, depth: depth + 1, generator: &generator, remaining: &remaining)
            }
        }
        for name in node.required where node.propertyIndex[name] == nil {
            object[name] = node.additional.map { draw($0, depth: depth + 1, generator: &generator, remaining: &remaining) }
                ?? .string(Self.phrase(using: &generator))
        }
        return .object(object)
    }
}
