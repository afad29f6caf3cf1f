import InferenceAPI
import Testing

@Suite struct HashKeyedTableTests {
    /// Keys crowded onto few home slots (their low bits mostly alike) make long probe runs, so
    /// removals must shift entries back across them and across the table's wrap-around.
    @Test func agreesWithADictionaryThroughInsertsUpdatesAndRemovals() {
        var generator = SplitMix64(seed: 7)
        var table = HashKeyedTable<Int>(filler: -1)
        var reference: [UInt64: Int] = [:]
        for step in 0..<200_000 {
            let crowded = generator.next() % 4 == 0
            let key = crowded ? (generator.next() % 64) << 40 | (generator.next() % 3) : generator.next() % 5_000
            switch generator.next() % 4 {
            case 0:
                table[key] = step
                reference[key] = step
            case 1:
                #expect(table.removeValue(forKey: key) == reference.removeValue(forKey: key))
            case 2:
                // Only a key that is there is changed; an absent one stays absent.
                let changed = table.modify(key) { $0 -= 1 } != nil
                #expect(changed == (reference[key] != nil))
                reference[key]? -= 1
            default:
                let added = table.update(key, default: 0) { value -> Int in
                    value += 1
                    return value
                }
                reference[key, default: 0] += 1
                #expect(added == reference[key])
            }
            if step % 10_000 == 0 {
                #expect(table.count == reference.count)
                for (key, value) in reference { #expect(table[key] == value) }
            }
        }
        var seen: [UInt64: Int] = [:]
        table.forEach { seen[$0] = $1 }
        #expect(seen == reference)
        #expect(reference[0] != nil, "the key 0 (stored apart) was exercised")
    }
}
