/// A map whose keys are already hashes (chained KV block hashes, xxhash64 prefix blocks), so
/// uniform that their low bits pick the slot: open addressing with linear probing, key and
/// value side by side in one array.
///
/// It stands in for `Dictionary<UInt64, Value>` where a thousand simulated pods and a picker's
/// prefix index make tens of millions of lookups into tables far larger than the CPU's caches:
/// a Dictionary hashes the key again (SipHash) and reads its occupancy bitmap, keys and values
/// from three places, three cache misses where this has one. Deletion shifts the following
/// entries back (no tombstones), so a table that churns stays as fast as a fresh one.
public struct HashKeyedTable<Value> {
    @usableFromInline
    struct Slot {
        /// 0 marks an empty slot; the key 0 itself lives in `zeroKeyValue`.
        @usableFromInline var key: UInt64
        @usableFromInline var value: Value

        @inlinable init(key: UInt64, value: Value) {
            self.key = key
            self.value = value
        }
    }

    @usableFromInline var slots: ContiguousArray<Slot>
    @usableFromInline var mask: Int
    @usableFromInline var zeroKeyValue: Value?
    /// What an empty slot holds (never read as a value).
    @usableFromInline let filler: Value
    /// Entries in `slots` (not counting the key 0).
    @usableFromInline var occupied = 0
    /// The last `preload`'s reads, folded (never used otherwise).
    @usableFromInline var preloaded: UInt64 = 0

    /// An empty table; `filler` is any value of the type (empty slots need one).
    @inlinable
    public init(filler: Value) {
        self.filler = filler
        slots = ContiguousArray(repeating: Slot(key: 0, value: filler), count: 8)
        mask = 7
    }

    @inlinable
    public var count: Int { occupied + (zeroKeyValue == nil ? 0 : 1) }

    @inlinable
    public subscript(key: UInt64) -> Value? {
        get {
            if key == 0 { return zeroKeyValue }
            let (index, found) = slot(of: key)
            return found ? slots[index].value : nil
        }
        set {
            if let newValue { update(key, default: newValue) { $0 = newValue } } else { removeValue(forKey: key) }
        }
    }

    /// Changes the key's value in place, inserting `initial` first when the key is absent; returns
    /// what `body` returns.
    @inlinable
    @discardableResult
    public mutating func update<Result>(_ key: UInt64, default initial: @autoclosure () -> Value, _ body: (inout Value) -> Result) -> Result {
        if key == 0 {
            var value = zeroKeyValue ?? initial()
            defer { zeroKeyValue = value }
            return body(&value)
        }
        let (index, found) = slot(of: key)
        if found { return body(&slots[index].value) }
        // Kept at most 5/8 full, where a probe is short.
        if (occupied + 1) * 8 > slots.count * 5 {
            grow()
            return update(key, default: initial(), body)
        }
        slots[index] = Slot(key: key, value: initial())
        occupied += 1
        return body(&slots[index].value)
    }

    /// Removes the key; returns its value if it had one.
    @inlinable
    @discardableResult
    public mutating func removeValue(forKey key: UInt64) -> Value? {
        if key == 0 {
            defer { zeroKeyValue = nil }
            return zeroKeyValue
        }
        var (hole, found) = slot(of: key)
        guard found else { return nil }
        let removed = slots[hole].value
        occupied -= 1
        // Backward shift: each later entry of the run moves into the hole unless its home slot
        // lies cyclically after the hole (it would then be found before reaching the hole).
        var next = (hole + 1) & mask
        while slots[next].key != 0 {
            let home = Int(truncatingIfNeeded: slots[next].key) & mask
            if (next - home) & mask >= (next - hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = Slot(key: 0, value: filler)
        return removed
    }

    /// Changes the key's value in place if it has one; nil when it has none.
    @inlinable
    public mutating func modify<Result>(_ key: UInt64, _ body: (inout Value) -> Result) -> Result? {
        if key == 0 {
            guard var value = zeroKeyValue else { return nil }
            defer { zeroKeyValue = value }
            return body(&value)
        }
        let (index, found) = slot(of: key)
        return found ? body(&slots[index].value) : nil
    }

    /// Reads the home slots of a batch of keys ahead of looking them up one by one. In a table
    /// far larger than the caches each lookup misses, and a lookup's work waits on its miss;
    /// these reads depend on nothing, so their misses overlap, and the lookups then hit. What
    /// they read is kept in `preloaded` only so that the reads are not optimised away.
    @inlinable
    public mutating func preload(_ keys: some Collection<UInt64>) {
        var folded: UInt64 = 0
        for key in keys { folded ^= slots[Int(truncatingIfNeeded: key) & mask].key }
        preloaded = folded
    }

    /// Where a key (not 0) is, or the empty slot that ends its probe when it is absent.
    @inlinable
    func slot(of key: UInt64) -> (index: Int, found: Bool) {
        var index = Int(truncatingIfNeeded: key) & mask
        while true {
            let slotKey = slots[index].key
            if slotKey == key { return (index, true) }
            if slotKey == 0 { return (index, false) }
            index = (index + 1) & mask
        }
    }

    @inlinable
    mutating func grow() {
        let old = slots
        slots = ContiguousArray(repeating: Slot(key: 0, value: filler), count: old.count * 2)
        mask = slots.count - 1
        for slot in old where slot.key != 0 {
            var index = Int(truncatingIfNeeded: slot.key) & mask
            while slots[index].key != 0 { index = (index + 1) & mask }
            slots[index] = slot
        }
    }

    /// Every key and value, in no particular order.
    @inlinable
    public func forEach(_ body: (UInt64, Value) -> Void) {
        if let zeroKeyValue { body(0, zeroKeyValue) }
        for slot in slots where slot.key != 0 { body(slot.key, slot.value) }
    }
}

extension HashKeyedTable: Sendable where Value: Sendable {}
extension HashKeyedTable.Slot: Sendable where Value: Sendable {}
