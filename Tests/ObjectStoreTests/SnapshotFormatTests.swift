import Crypto
import Foundation
import ObjectStore
import Testing

/// The encrypted snapshot format (docs/formats.md): round trips at the chunk edges, and the
/// tamper suite — every change is detected and the output file never appears.
struct SnapshotFormatTests {
    static let chunk = 4096
    let key = SymmetricKey(size: .bits256)

    func seal(_ plain: Data, id: String = "snap-1", key: SymmetricKey? = nil, feed: Int = 1000) throws -> Data {
        var sealer = SnapshotSealer(dataKey: key ?? self.key, header: try SnapshotFormat.Header(snapshotID: id, chunkSize: Self.chunk))
        var out = Data(sealer.header.bytes)
        var rest = plain[...]
        while !rest.isEmpty {
            out += try sealer.add(Data(rest.prefix(feed)))
            rest = rest.dropFirst(feed)
        }
        return out + (try sealer.finish())
    }

    func open(_ object: Data, key: SymmetricKey? = nil, feed: Int = 777) throws -> Data {
        var opener = SnapshotOpener(dataKey: key ?? self.key)
        var out = Data()
        var rest = object[...]
        while !rest.isEmpty {
            out += try opener.add(Data(rest.prefix(feed)))
            rest = rest.dropFirst(feed)
        }
        return out + (try opener.finish())
    }

    func code(_ body: () throws -> Data) -> SnapshotFormat.FormatError.Code? {
        do {
            _ = try body()
            return nil
        } catch let e as SnapshotFormat.FormatError {
            return e.code
        } catch {
            return .io
        }
    }

    @Test(arguments: [0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 5])
    func roundTripsAtTheChunkEdges(_ size: Int) throws {
        let plain = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let object = try seal(plain)
        let header = try #require(try SnapshotFormat.Header.parse(object))
        let chunks = max(1, (size + Self.chunk - 1) / Self.chunk)
        #expect(object.count == header.bytes.count + size + chunks * SnapshotFormat.tagSize, "exactly 16 bytes per chunk")
        #expect(try open(object) == plain)
        #expect(try open(object, feed: 1) == plain, "any feeding granularity")
        #expect(try seal(plain) != object, "a fresh salt every time")
    }

    @Test func theTamperSuite() throws {
        let plain = Data((0..<(3 * Self.chunk + 100)).map { UInt8(truncatingIfNeeded: $0) })
        let object = try seal(plain)
        let headerSize = try #require(try SnapshotFormat.Header.parse(object)).bytes.count
        let full = Self.chunk + SnapshotFormat.tagSize
        func chunkRange(_ i: Int) -> Range<Int> { (headerSize + i * full)..<min(object.count, headerSize + (i + 1) * full) }

        var flipped = object
        flipped[headerSize + 10] ^= 0x01
        #expect(code { try open(flipped) } == .authentication, "a flipped ciphertext byte")
        var flippedTag = object
        flippedTag[object.count - 1] ^= 0x80
        #expect(code { try open(flippedTag) } == .authentication, "a flipped tag byte")
        var flippedSalt = object
        flippedSalt[20] ^= 0x01
        #expect(code { try open(flippedSalt) } == .authentication, "a changed salt derives another key")

        #expect(code { try open(object.prefix(object.count - 1)) } == .authentication, "the last chunk cut short")
        #expect(code { try open(object.prefix(chunkRange(3).lowerBound)) } == .truncated, "the last chunk dropped")
        #expect(code { try open(object.prefix(headerSize)) } == .truncated, "only the header")
        #expect(code { try open(object.prefix(20)) } == .truncated, "inside the header")
        #expect(code { try open(object + Data([0])) } == .authentication || code { try open(object + Data([0])) } == .trailingData, "a byte appended")
        #expect(code { try open(object + object[chunkRange(0)]) } != nil, "a chunk appended")

        var dropped = object
        dropped.removeSubrange(chunkRange(1))
        #expect(code { try open(dropped) } == .authentication, "a middle chunk dropped")
        var swapped = object.prefix(headerSize)
        swapped += object[chunkRange(1)] + object[chunkRange(0)] + object[chunkRange(2)] + object[chunkRange(3)]
        #expect(code { try open(swapped) } == .authentication, "two chunks swapped")
        var duplicated = object.prefix(headerSize)
        duplicated += object[chunkRange(0)] + object[chunkRange(0)] + object[chunkRange(2)] + object[chunkRange(3)]
        #expect(code { try open(duplicated) } == .authentication, "a chunk duplicated")

        // Another snapshot under the same data key: its chunks do not fit this one.
        let other = try seal(plain, id: "snap-2")
        var foreign = object
        foreign.replaceSubrange(chunkRange(1), with: other[chunkRange(1)])
        #expect(code { try open(foreign) } == .authentication, "a chunk from another snapshot")
        let sameID = try seal(plain)
        var sameIDForeign = object
        sameIDForeign.replaceSubrange(chunkRange(1), with: sameID[chunkRange(1)])
        #expect(code { try open(sameIDForeign) } == .authentication, "even from a re-encryption of the same snapshot (another salt)")

        #expect(code { try open(object, key: SymmetricKey(size: .bits256)) } == .authentication, "another data key (a replaced wrapped key)")
        var badMagic = object
        badMagic[0] = 0x58
        #expect(code { try open(badMagic) } == .notSnapshot)
        var badVersion = object
        badVersion[8] = 2
        #expect(code { try open(badVersion) } == .notSnapshot)
        var hugeChunk = object
        hugeChunk[10] = 0x7F
        #expect(code { try open(hugeChunk) } == .badHeader, "a chunk size past the bound is refused before any allocation")
    }

    @Test func theFileToolsLeaveNothingBehindOnFailure() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snapfmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = Data((0..<(2 * 1_048_576 + 3)).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        let input = dir.appendingPathComponent("volume.raw").path
        let object = dir.appendingPathComponent("volume.felsnap").path
        let output = dir.appendingPathComponent("restored.raw").path
        try plain.write(to: URL(fileURLWithPath: input))
        let summary = try SnapshotFiles.encrypt(input: input, output: object, dataKey: key, snapshotID: "vol-1.2026-12-01")
        #expect(summary.plaintextBytes == plain.count)
        let back = try SnapshotFiles.decrypt(input: object, output: output, dataKey: key)
        #expect(back.snapshotID == "vol-1.2026-12-01")
        #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == plain)
        try FileManager.default.removeItem(atPath: output)

        var tampered = try Data(contentsOf: URL(fileURLWithPath: object))
        tampered[tampered.count - 100] ^= 1
        try tampered.write(to: URL(fileURLWithPath: object))
        #expect(throws: SnapshotFormat.FormatError.self) { try SnapshotFiles.decrypt(input: object, output: output, dataKey: key) }
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["volume.felsnap", "volume.raw"], "no output, no temporary file"
        )
    }

    /// docs/formats.md's known answer, reproduced by the independent Python implementation
    /// (`scripts/interop/snapshot_format.py encrypt k snap-1 p o 4096 2021…3f`).
    @Test func knownAnswer() throws {
        let key = SymmetricKey(data: Data(0..<32))
        let header = try SnapshotFormat.Header(snapshotID: "snap-1", chunkSize: 4096, salt: Array(32..<64))
        var sealer = SnapshotSealer(dataKey: key, header: header)
        let object = Data(header.bytes) + (try sealer.add(Data("hello".utf8))) + (try sealer.finish())
        #expect(SigV4.hex(Array(SHA256.hash(data: object))) == "6dff0a24e8915bf926e53eab87deeb6a628e6fd5a5d1704e7523200c99418289")
    }

    @Test func keyFilesAreRawOrHex() throws {
        let raw = Data((0..<32).map { UInt8($0) })
        let hex = raw.map { String(format: "%02x", $0) }.joined() + "\n"
        #expect(try SnapshotFormat.dataKey(fromFile: raw) == SymmetricKey(data: raw))
        #expect(try SnapshotFormat.dataKey(fromFile: Data(hex.utf8)) == SymmetricKey(data: raw))
        #expect(throws: SnapshotFormat.FormatError.self) { try SnapshotFormat.dataKey(fromFile: Data("abc".utf8)) }
        #expect(throws: SnapshotFormat.FormatError.self) { try SnapshotFormat.dataKey(fromFile: Data(String(repeating: "zz", count: 32).utf8)) }
    }
}
