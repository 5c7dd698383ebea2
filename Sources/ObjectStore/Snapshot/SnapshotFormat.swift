import Crypto
import Foundation

/// The encrypted snapshot object, `felhom-snap-v1` (docs/formats.md §"Volume snapshot object"):
///
/// ```
/// header  "FELSNAP1" | version 1 | algorithm 1 (AES-256-GCM) | chunk size (u32 BE)
///         | salt (32 random bytes) | id length (u8) | snapshot id (UTF-8)
/// chunks  AES-256-GCM(chunk key, nonce_i, plaintext_i, aad = header) = ciphertext_i ‖ tag_i (16)
/// ```
///
/// - chunk key = HKDF-SHA256(ikm: data key, salt: salt, info: `"felhom-snap-v1"` ‖ snapshot id),
///   so a key/nonce pair never repeats even when a data key is reused (every object has a fresh salt);
/// - nonce_i = `i` as an 11-byte big-endian counter ‖ `0x01` for the last chunk, else `0x00`
///   (the STREAM construction, as in age): truncation, reordering, dropping, duplicating and
///   chunk swapping between snapshots all fail a tag, and nothing may follow the last chunk;
/// - every chunk holds `chunk size` plaintext bytes but the last, which holds 1…`chunk size`
///   (0 only when the whole volume is empty: one empty last chunk).
public enum SnapshotFormat {
    public static let magic: [UInt8] = Array("FELSNAP1".utf8)
    public static let version: UInt8 = 1
    public static let algorithmAES256GCM: UInt8 = 1
    public static let tagSize = 16
    public static let saltSize = 32
    public static let defaultChunkSize = 1 << 20
    /// Chunk sizes a reader accepts (a hostile header cannot make it allocate more).
    public static let chunkSizes = (4 << 10)...(16 << 20)
    public static let maxSnapshotID = 128
    static let info = Array("felhom-snap-v1".utf8)

    /// Why an object did not decrypt (or could not be made). Never contains key material.
    public struct FormatError: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: String, Sendable {
            /// Not a felhom snapshot, or a version this build does not read.
            case notSnapshot = "not_snapshot"
            case badHeader = "bad_header"
            /// A chunk's tag did not verify: wrong key, flipped byte, reordered or foreign chunk.
            case authentication = "authentication_failed"
            /// The object ends before its last chunk.
            case truncated
            /// Bytes follow the last chunk.
            case trailingData = "trailing_data"
            case badKey = "bad_key"
            case io
        }
        public var code: Code
        public var message: String
        public var description: String { "\(code.rawValue): \(message)" }
        public init(_ code: Code, _ message: String) {
            self.code = code
            self.message = message
        }
    }

    /// A parsed object header.
    public struct Header: Sendable, Equatable {
        public var chunkSize: Int
        public var salt: [UInt8]
        public var snapshotID: String
        /// The header's bytes (the AAD of every chunk).
        public var bytes: [UInt8]

        /// A new header with a fresh random salt.
        public init(snapshotID: String, chunkSize: Int = SnapshotFormat.defaultChunkSize, salt: [UInt8]? = nil) throws(FormatError) {
            guard SnapshotFormat.chunkSizes.contains(chunkSize) else {
                throw FormatError(.badHeader, "chunk size \(chunkSize) is outside \(SnapshotFormat.chunkSizes)")
            }
            guard SnapshotFormat.isValidID(snapshotID) else {
                throw FormatError(.badHeader, "snapshot id must be 1–\(SnapshotFormat.maxSnapshotID) characters of A-Z a-z 0-9 . _ -")
            }
            var s = salt ?? []
            if salt == nil {
                var rng = SystemRandomNumberGenerator()
                s = (0..<SnapshotFormat.saltSize).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            guard s.count == SnapshotFormat.saltSize else { throw FormatError(.badHeader, "the salt must be \(SnapshotFormat.saltSize) bytes") }
            self.chunkSize = chunkSize
            self.salt = s
            self.snapshotID = snapshotID
            var b = SnapshotFormat.magic + [SnapshotFormat.version, SnapshotFormat.algorithmAES256GCM]
            b += withUnsafeBytes(of: UInt32(chunkSize).bigEndian) { Array($0) }
            b += s
            b.append(UInt8(snapshotID.utf8.count))
            b += Array(snapshotID.utf8)
            bytes = b
        }

        /// Parses a header from the start of `data`; nil when more bytes are needed.
        public static func parse(_ data: some Collection<UInt8>) throws(FormatError) -> Header? {
            let d = Array(data.prefix(15 + SnapshotFormat.saltSize + 255))
            guard d.count >= 8 else { return nil }
            guard Array(d[0..<8]) == SnapshotFormat.magic else { throw FormatError(.notSnapshot, "not a felhom snapshot object (bad magic)") }
            guard d.count >= 14 + SnapshotFormat.saltSize + 1 else { return nil }
            guard d[8] == SnapshotFormat.version else {
                throw FormatError(.notSnapshot, "snapshot format version \(d[8]) is not supported (this build reads 1)")
            }
            guard d[9] == SnapshotFormat.algorithmAES256GCM else { throw FormatError(.badHeader, "unknown algorithm \(d[9])") }
            let chunk = Int(d[10]) << 24 | Int(d[11]) << 16 | Int(d[12]) << 8 | Int(d[13])
            let salt = Array(d[14..<(14 + SnapshotFormat.saltSize)])
            let idLength = Int(d[14 + SnapshotFormat.saltSize])
            let idStart = 15 + SnapshotFormat.saltSize
            guard d.count >= idStart + idLength else { return nil }
            let id = String(decoding: d[idStart..<(idStart + idLength)], as: UTF8.self)
            let header = try Header(snapshotID: id, chunkSize: chunk, salt: salt)
            guard header.bytes == Array(d[0..<(idStart + idLength)]) else { throw FormatError(.badHeader, "the header does not re-encode to itself") }
            return header
        }

        /// The per-object chunk key.
        public func chunkKey(dataKey: SymmetricKey) -> SymmetricKey {
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: dataKey, salt: salt, info: SnapshotFormat.info + Array(snapshotID.utf8), outputByteCount: 32)
        }
    }

    static func isValidID(_ id: String) -> Bool {
        (1...maxSnapshotID).contains(id.utf8.count)
            && id.utf8.allSatisfy {
                (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D
            }
    }

    /// The 12-byte nonce of chunk `index`.
    static func nonce(_ index: UInt64, last: Bool) -> AES.GCM.Nonce {
        var n = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: index.bigEndian) { raw in
            for i in 0..<8 { n[3 + i] = raw[i] }
        }
        n[11] = last ? 1 : 0
        return try! AES.GCM.Nonce(data: n)  // 12 bytes: always valid
    }

    /// A 32-byte data key from a key file's text: 32 raw bytes, or 64 hex digits (a newline allowed).
    public static func dataKey(fromFile contents: Data) throws(FormatError) -> SymmetricKey {
        if contents.count == 32 { return SymmetricKey(data: contents) }
        let text = String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.utf8.count == 64 else {
            throw FormatError(.badKey, "a key file holds 32 raw bytes or 64 hex digits (this one has \(contents.count) bytes)")
        }
        var bytes: [UInt8] = []
        var it = text.utf8.makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = hexValue(hi), let l = hexValue(lo) else { throw FormatError(.badKey, "the key file is not 64 hex digits") }
            bytes.append(h << 4 | l)
        }
        return SymmetricKey(data: bytes)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
}

/// Seals a snapshot chunk by chunk (``SnapshotFormat``). Feed it plaintext in any sizes; it
/// hands out ciphertext as whole chunks are complete.
public struct SnapshotSealer {
    public let header: SnapshotFormat.Header
    let key: SymmetricKey
    var index: UInt64 = 0
    var buffer = Data()
    var finished = false

    public init(dataKey: SymmetricKey, header: SnapshotFormat.Header) {
        self.header = header
        key = header.chunkKey(dataKey: dataKey)
        buffer.reserveCapacity(header.chunkSize)
    }

    /// Adds plaintext; returns the ciphertext of the chunks it completed (a full chunk is held
    /// back until more data or ``finish()`` says whether it is the last).
    public mutating func add(_ plaintext: Data) throws(SnapshotFormat.FormatError) -> Data {
        precondition(!finished, "add after finish")
        buffer.append(plaintext)
        var out = Data()
        var start = buffer.startIndex
        while buffer.endIndex - start > header.chunkSize {
            let sealed = try sealChunk(buffer[start..<(start + header.chunkSize)], last: false)
            out += sealed.ciphertext
            out += sealed.tag
            start += header.chunkSize
        }
        if start != buffer.startIndex { buffer = Data(buffer[start...]) }
        return out
    }

    /// Seals the last chunk (empty only when nothing was added).
    public mutating func finish() throws(SnapshotFormat.FormatError) -> Data {
        precondition(!finished, "finish twice")
        let sealed = try sealChunk(buffer, last: true)
        finished = true
        return sealed.ciphertext + sealed.tag
    }

    /// Seals the next chunk as it is: `chunkSize` bytes for every chunk but the last, 1…`chunkSize`
    /// for the last (0 only when it is also the first). For callers that read whole chunks
    /// themselves (no copy through ``add(_:)``'s buffer).
    public mutating func sealChunk<D: DataProtocol>(_ chunk: D, last: Bool) throws(SnapshotFormat.FormatError) -> (ciphertext: Data, tag: Data) {
        guard !finished else { throw SnapshotFormat.FormatError(.io, "the last chunk was already sealed") }
        let size = chunk.count
        guard last ? (size <= header.chunkSize && (size > 0 || index == 0)) : size == header.chunkSize else {
            throw SnapshotFormat.FormatError(
                .io, "chunk \(index) has \(size) bytes (chunks hold \(header.chunkSize); the last 1…\(header.chunkSize))")
        }
        defer { index += 1 }
        if last { finished = true }
        do {
            let box = try AES.GCM.seal(chunk, using: key, nonce: SnapshotFormat.nonce(index, last: last), authenticating: header.bytes)
            return (box.ciphertext, box.tag)
        } catch {
            throw SnapshotFormat.FormatError(.io, "AES-GCM seal failed: \(error)")
        }
    }
}

/// Opens a snapshot object chunk by chunk, verifying each before releasing its plaintext.
/// Feed it ciphertext in any sizes; ``finish()`` checks that the last chunk was seen.
public struct SnapshotOpener {
    let dataKey: SymmetricKey
    public private(set) var header: SnapshotFormat.Header?
    var key: SymmetricKey?
    var index: UInt64 = 0
    var buffer = Data()
    var sawLast = false

    public init(dataKey: SymmetricKey) { self.dataKey = dataKey }

    /// An opener for an object whose header was read already (``SnapshotFormat/Header/parse(_:)``).
    public init(dataKey: SymmetricKey, header: SnapshotFormat.Header) {
        self.dataKey = dataKey
        self.header = header
        key = header.chunkKey(dataKey: dataKey)
    }

    /// Adds ciphertext; returns the verified plaintext of every chunk it could open.
    public mutating func add(_ ciphertext: Data) throws(SnapshotFormat.FormatError) -> Data {
        buffer += ciphertext
        if header == nil {
            guard let h = try SnapshotFormat.Header.parse(buffer) else { return Data() }
            header = h
            key = h.chunkKey(dataKey: dataKey)
            buffer.removeFirst(h.bytes.count)
        }
        guard let header else { return Data() }
        if sawLast, !buffer.isEmpty { throw SnapshotFormat.FormatError(.trailingData, "data after the last chunk") }
        var out = Data()
        let full = header.chunkSize + SnapshotFormat.tagSize
        // A full chunk is opened only when more bytes follow it (so it cannot be the last).
        var start = buffer.startIndex
        while buffer.endIndex - start > full {
            out += try openChunk(buffer[start..<(start + full)], last: false)
            start += full
        }
        if start != buffer.startIndex { buffer = Data(buffer[start...]) }
        return out
    }

    /// The last chunk: what is left must open as the final chunk.
    public mutating func finish() throws(SnapshotFormat.FormatError) -> Data {
        guard let header else { throw SnapshotFormat.FormatError(.truncated, "the object ends inside its header") }
        if sawLast {
            guard buffer.isEmpty else { throw SnapshotFormat.FormatError(.trailingData, "data after the last chunk") }
            return Data()
        }
        guard buffer.count >= SnapshotFormat.tagSize else {
            throw SnapshotFormat.FormatError(.truncated, "the object ends without its last chunk (after chunk \(index))")
        }
        guard buffer.count <= header.chunkSize + SnapshotFormat.tagSize else {
            throw SnapshotFormat.FormatError(.trailingData, "data after the last chunk")
        }
        let plain = try openChunk(buffer, last: true)
        buffer.removeAll()
        return plain
    }

    /// Opens the next chunk (ciphertext and its 16-byte tag) as it is; `last` says whether the
    /// caller saw the object end after it. Callers that read whole chunks themselves use this.
    public mutating func openChunk<D: DataProtocol>(_ chunk: D, last: Bool) throws(SnapshotFormat.FormatError) -> Data {
        guard let header, let key else { throw SnapshotFormat.FormatError(.truncated, "no header") }
        guard chunk.count >= SnapshotFormat.tagSize, chunk.count <= header.chunkSize + SnapshotFormat.tagSize else {
            throw SnapshotFormat.FormatError(.truncated, "chunk \(index) is \(chunk.count) bytes")
        }
        let body = chunk.prefix(chunk.count - SnapshotFormat.tagSize)
        let tag = chunk.suffix(SnapshotFormat.tagSize)
        func attempt(_ final: Bool) -> Data? {
            guard let box = try? AES.GCM.SealedBox(nonce: SnapshotFormat.nonce(index, last: final), ciphertext: body, tag: tag) else { return nil }
            return try? AES.GCM.open(box, using: key, authenticating: header.bytes)
        }
        guard let plain = attempt(last) else {
            // The object's end fell on a chunk sealed as "not last": it was cut at a chunk boundary.
            if last, attempt(false) != nil {
                throw SnapshotFormat.FormatError(.truncated, "the object was cut after chunk \(index): its last chunk is missing")
            }
            throw SnapshotFormat.FormatError(
                .authentication,
                "chunk \(index) does not verify (a wrong key, a changed byte, or a chunk out of place or from another snapshot)")
        }
        guard !(last && index > 0 && plain.isEmpty) else { throw SnapshotFormat.FormatError(.authentication, "an empty last chunk after data") }
        index += 1
        if last { sawLast = true }
        return plain
    }
}

extension SnapshotFormat {
    /// Keeps the 1 MiB buffers of the AEAD in the heap (glibc `mallopt`: mmap threshold 32 MiB,
    /// trim threshold 256 MiB). By default glibc maps and unmaps every buffer that large, and the
    /// page faults cost the sealing path three to four times the AES itself (docs/performance.md).
    /// Process-wide and idempotent; the snapshot commands and the agent call it at start.
    public static func keepChunkBuffersInHeap() {
        #if os(Linux)
            _ = glibcMallopt(-3, 32 << 20)  // M_MMAP_THRESHOLD (malloc.h)
            _ = glibcMallopt(-1, 256 << 20)  // M_TRIM_THRESHOLD
        #endif
    }
}

extension SnapshotFormat {
    /// The size of the object that seals `plaintext` bytes: header, ciphertext and one 16-byte
    /// tag per chunk (an empty volume still has one, empty, last chunk).
    public static func objectSize(plaintext: Int64, snapshotID: String, chunkSize: Int = defaultChunkSize) -> Int64 {
        let chunks = max(1, (plaintext + Int64(chunkSize) - 1) / Int64(chunkSize))
        return Int64(47 + snapshotID.utf8.count) + plaintext + 16 * chunks
    }

    /// Gives the memory freed since the last call back to the system (glibc `malloc_trim`): the
    /// snapshot pipeline calls it once per part, so buffers freed on other threads' arenas do not
    /// add up in the resident set.
    public static func returnFreedMemory() {
        #if os(Linux)
            _ = glibcMallocTrim(0)
        #endif
    }

    /// For the volume-snapshot pipeline (upload and restore): at most two malloc arenas (each
    /// thread that frees a part otherwise keeps its own arena's high-water mark), and buffers of
    /// 4 MiB or more (the upload parts, the download ranges) mapped on their own and returned to
    /// the system when freed, so the resident set follows what is live, whatever the volume's size.
    public static func limitMallocArenas() {
        #if os(Linux)
            _ = glibcMallopt(-8, 2)  // M_ARENA_MAX (malloc.h)
            _ = glibcMallopt(-3, 4 << 20)  // M_MMAP_THRESHOLD: fixed, so glibc does not raise it
        #endif
    }
}

#if os(Linux)
    /// glibc's `int malloc_trim(size_t)`.
    @_silgen_name("malloc_trim")
    private func glibcMallocTrim(_ pad: Int) -> Int32

    /// glibc's `int mallopt(int, int)` (malloc.h is not part of the Glibc module).
    @_silgen_name("mallopt")
    private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
