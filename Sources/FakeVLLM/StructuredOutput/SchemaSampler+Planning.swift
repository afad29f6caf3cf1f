import Foundation
import InferenceAPI

// MARK: - Planning: what each alternative can produce, and at what cost

extension SchemaSampler {
    /// 2^62: integers are kept inside ±this so that window arithmetic cannot overflow.
    static let integerEdge = 4_611_686_018_427_387_904.0

    /// The kinds an alternative can draw; infeasible ones (empty ranges, a required member that
    /// is forbidden) are left out, and an alternative with none is dropped.
    static func kinds(of node: Node, nodes: [Node]) -> [Kind] {
        if node.isFalse { return [] }
        if node.choices != nil { return [.choice] }
        var types = node.types
        if types == .all {
            if node.keywordTypes.isEmpty { return [.anything] }
            types = node.keywordTypes
        }
        types.subtract(node.blockedTypes)
        var kinds: [Kind] = []
        if types.contains(.null) { kinds.append(.null) }
        if types.contains(.boolean) { kinds.append(.boolean) }
        if types.contains(.number) {
            // Integral steps give integers, which are numbers too and need no tolerance.
            if let step = node.multipleOf, step != step.rounded() {
                if let kind = steppedNumberKind(node, step: step) { kinds.append(kind) }
            } else if node.multipleOf != nil {
                if let kind = integerKind(node) { kinds.append(kind) }
            } else if let kind = numberKind(node) {
                kinds.append(kind)
            }
        } else if types.contains(.integer), let kind = integerKind(node) {
            kinds.append(kind)
        }
        if types.contains(.string), node.minLength <= node.maxLength { kinds.append(.string) }
        if types.contains(.array), node.minItems <= node.maxItems,
           (0..<node.minItems).allSatisfy({ node.itemRule($0).map { !nodes[$0].isFalse } ?? true }) {
            kinds.append(.array)
        }
        if types.contains(.object), node.required.allSatisfy({ node.propertyRule($0).map { !nodes[$0].isFalse } ?? true }) {
            kinds.append(.object)
        }
        return kinds
    }

    static func integerKind(_ node: Node) -> Kind? {
        var low = -integerEdge, high = integerEdge
        if let bound = node.lower { low = max(low, bound.exclusive ? bound.value.rounded(.down) + 1 : bound.value.rounded(.up)) }
        if let bound = node.upper { high = min(high, bound.exclusive ? bound.value.rounded(.up) - 1 : bound.value.rounded(.down)) }
        guard low <= high else { return nil }
        var step = 1
        if let multiple = node.multipleOf {
            if multiple == multiple.rounded() {
                // Past ±2^62 the only multiple the sampler can write is 0.
                guard multiple <= integerEdge else { return low <= 0 && high >= 0 ? .integer(kLow: 0, kHigh: 0, step: 1) : nil }
                step = Int(multiple)
            } else if (1 / multiple) != (1 / multiple).rounded() {
                return nil  // e.g. 0.3: some integers are multiples, but not as floating point says
            }
        }
        let kLow = -floorDivide(-Int(low), step), kHigh = floorDivide(Int(high), step)
        return kLow <= kHigh ? .integer(kLow: kLow, kHigh: kHigh, step: step) : nil
    }

    static func floorDivide(_ value: Int, _ divisor: Int) -> Int {
        value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
    }

    /// Closed double bounds: an exclusive bound moves to the next representable value.
    static func closedRange(_ node: Node, unbounded: Double) -> (Double, Double) {
        let low = node.lower.map { $0.exclusive ? $0.value.nextUp : $0.value } ?? -unbounded
        let high = node.upper.map { $0.exclusive ? $0.value.nextDown : $0.value } ?? unbounded
        return (low, high)
    }

    static func numberKind(_ node: Node) -> Kind? {
        let (low, high) = closedRange(node, unbounded: .greatestFiniteMagnitude)
        return low <= high && low.isFinite && high.isFinite ? .number(low: low, high: high) : nil
    }

    static func steppedNumberKind(_ node: Node, step: Double) -> Kind? {
        // Unbounded sides are pulled in so that low/step stays finite for small steps.
        let (low, high) = closedRange(node, unbounded: 1e15)
        let kLow = (low / step).rounded(.up), kHigh = (high / step).rounded(.down)
        return kLow.isFinite && kHigh.isFinite && kLow <= kHigh ? .numberStep(kLow: kLow, kHigh: kHigh, step: step) : nil
    }

    /// Whether a draw of this alternative may miss, so the node's draws must be validated.
    static func needsCheck(_ node: Node) -> Bool {
        if let pattern = node.pattern,
           node.format != nil || pattern.lengthRange.lowerBound < node.minLength || pattern.lengthRange.upperBound > node.maxLength {
            return true
        }
        if let format = node.format, knownFormats.contains(format), node.minLength > 0 || node.maxLength < Int.max { return true }
        if let step = node.multipleOf, step != step.rounded() { return true }
        return node.uniqueItems && node.minItems >= 2
    }

    /// The number of JSON values in the smallest instance of one (alternative, kind).
    static func cost(of alternative: Alternative, kind: Int, costs: [Int]) -> Int {
        let node = alternative.node
        var total = 1
        switch alternative.kinds[kind] {
        case .array:
            for position in 0..<node.minItems { total = min(infinite, total + (node.itemRule(position).map { costs[$0] } ?? 1)) }
        case .object:
            for name in node.required { total = min(infinite, total + (node.propertyRule(name).map { costs[$0] } ?? 1)) }
        default: break
        }
        return total
    }

    /// Smallest-instance costs by fixpoint over a work list: recursive references start infinite
    /// and come down only through a path that terminates; a node whose cost drops puts the
    /// schemas that contain it back on the list. Evaluations are capped: a cost not yet at its
    /// minimum is still the size of a real instance, so stopping early is safe.
    static func costs(nodes: [Node], alternatives: [[Alternative]], undrawable: Set<Int>) -> [Int] {
        var containers = [[Int]](repeating: [], count: nodes.count)
        for index in nodes.indices {
            for alternative in alternatives[index] {
                let node = alternative.node
                for child in node.prefixItems + [node.items, node.additional].compactMap({ $0 }) + node.properties.map(\.node) {
                    containers[child].append(index)
                }
            }
        }
        var costs = [Int](repeating: infinite, count: nodes.count)
        var pending = Array(nodes.indices), queued = [Bool](repeating: true, count: nodes.count)
        var evaluations = 0
        while let index = pending.popLast(), evaluations < 64 * nodes.count + 10_000 {
            queued[index] = false
            evaluations += 1
            guard !undrawable.contains(index) else { continue }
            var best = costs[index]
            for alternative in alternatives[index] {
                for kind in alternative.kinds.indices { best = min(best, cost(of: alternative, kind: kind, costs: costs)) }
            }
            guard best < costs[index] else { continue }
            costs[index] = best
            for container in containers[index] where !queued[container] {
                queued[container] = true
                pending.append(container)
            }
        }
        return costs
    }

    /// The nesting of the deepest smallest instance any node has. Children of a smallest instance
    /// cost strictly less than their parent, so visiting nodes by cost sees children first.
    static func deepestMinimalInstance(options: [[Option]], alternatives: [[Alternative]]) -> Int {
        var depths = [Int](repeating: 0, count: options.count)
        let order = options.indices.filter { !options[$0].isEmpty }.sorted { options[$0][0].cost < options[$1][0].cost }
        for index in order {
            for option in options[index] where option.cost == options[index][0].cost {
                let node = alternatives[index][option.alternative].node
                let children: [Int?]
                switch alternatives[index][option.alternative].kinds[option.kind] {
                case .array: children = (0..<node.minItems).map(node.itemRule)
                case .object: children = node.required.map(node.propertyRule)
                default: children = []
                }
                for child in children { depths[index] = max(depths[index], 1 + (child.map { depths[$0] } ?? 0)) }
            }
        }
        return depths.max() ?? 0
    }

    /// Each node's drawable (alternative, kind) pairs, cheapest first.
    static func options(nodes: [Node], alternatives: [[Alternative]], undrawable: Set<Int>) -> [[Option]] {
        let costs = costs(nodes: nodes, alternatives: alternatives, undrawable: undrawable)
        return nodes.indices.map { index in
            var list: [Option] = []
            for (a, alternative) in alternatives[index].enumerated() where costs[index] < infinite {
                for k in alternative.kinds.indices {
                    let cost = cost(of: alternative, kind: k, costs: costs)
                    if cost < infinite { list.append(Option(alternative: a, kind: k, cost: cost)) }
                }
            }
            return list.sorted { $0.cost < $1.cost }
        }
    }

    /// For every checked node a draw can reach, a valid value found now, so that `sample` has a
    /// fallback; returns the first node for which none turned up (overlapping oneOf, a pattern
    /// longer than maxLength).
    mutating func findWitnesses() -> Int? {
        var reachable: Set<Int> = [0], frontier = [0]
        while let index = frontier.popLast() {
            for alternative in alternatives[index] {
                let node = alternative.node
                let children = node.prefixItems + [node.items, node.additional].compactMap { $0 } + node.properties.map(\.node)
                for child in children where !options[child].isEmpty && reachable.insert(child).inserted { frontier.append(child) }
            }
        }
        for index in reachable.sorted(by: >) where checked.contains(index) && witnesses[index] == nil {
            var generator = SplitMix64(seed: UInt64(index))
            for attempt in 0..<80 where witnesses[index] == nil {
                var remaining = attempt < 64 ? Self.valueBudget : 0
                let value = drawOnce(index, depth: 1, generator: &generator, remaining: &remaining)
                if isValid(value, at: index) { witnesses[index] = value }
            }
            if witnesses[index] == nil { return index }
        }
        return nil
    }
}
