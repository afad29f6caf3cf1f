/// XXH64 (Yann Collet's xxHash, 64-bit), as GIE's prefix-cache scorer hashes prompt blocks.
public enum XXHash64 {
    private static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    public static func hash(_ bytes: some Collection<UInt8>, seed: UInt64 = 0) -> UInt64 {
        let data = Array(bytes)
        return data.withUnsafeBytes { hash($0, seed: seed) }
    }

    public static func hash(_ data: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let length = data.count
        var offset = 0
        var h: UInt64
        func read64(_ at: Int) -> UInt64 { data.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian }
        func read32(_ at: Int) -> UInt64 { UInt64(data.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian) }
        if length >= 32 {
            var v1 = seed &+ prime1 &+ prime2, v2 = seed &+ prime2, v3 = seed, v4 = seed &- prime1
            while offset + 32 <= length {
                v1 = round(v1, read64(offset))
                v2 = round(v2, read64(offset + 8))
                v3 = round(v3, read64(offset + 16))
                v4 = round(v4, read64(offset + 24))
                offset += 32
            }
            h = rotate(v1, 1) &+ rotate(v2, 7) &+ rotate(v3, 12) &+ rotate(v4, 18)
            for v in [v1, v2, v3, v4] { h = (h ^ round(0, v)) &* prime1 &+ prime4 }
        } else {
            h = seed &+ prime5
        }
        h &+= UInt64(length)
        while offset + 8 <= length {
            h = rotate(h ^ round(0, read64(offset)), 27) &* prime1 &+ prime4
            offset += 8
        }
        if offset + 4 <= length {
            h = rotate(h ^ (read32(offset) &* prime1), 23) &* prime2 &+ prime3
            offset += 4
        }
        while offset < length {
            h = rotate(h ^ (UInt64(data[offset]) &* prime5), 11) &* prime1
            offset += 1
        }
        h ^= h >> 33
        h &*= prime2
        h ^= h >> 29
        h &*= prime3
        h ^= h >> 32
        return h
    }

    @inline(__always) private static func round(_ accumulator: UInt64, _ input: UInt64) -> UInt64 {
        rotate(accumulator &+ input &* prime2, 31) &* prime1
    }

    @inline(__always) private static func rotate(_ value: UInt64, _ bits: UInt64) -> UInt64 {
        (value << bits) | (value >> (64 - bits))
    }
}
