import FelhomCore
import FelhomTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Append log: crash-safe appends")
struct AppendLogTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "felhom-log-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func lines(_ path: String) throws -> [String] {
        var out: [String] = []
        _ = try AppendLog(path: path) { line in
            out.append(String(decoding: line, as: UTF8.self))
            return true
        }
        return out
    }

    @Test func aFailedShortWriteIsCutBackAndTheNextRecordStaysWhole() throws {
        let path = try tempDir() + "/log"
        let io = FaultyIO()
        let log = try AppendLog(path: path, io: io) { _ in true }
        try log.append(Array("first".utf8))
        io.faults.withLock { $0.shortWriteThenFail = 3 }
        #expect(throws: AppendLogError.self) { try log.append(Array("second-lost".utf8)) }
        try log.append(Array("third".utf8))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "first\nthird\n")
        #expect(try lines(path) == ["first", "third"])
    }

    @Test func aLegalShortWriteIsCompleted() throws {
        let path = try tempDir() + "/log"
        let io = FaultyIO()
        let log = try AppendLog(path: path, io: io) { _ in true }
        io.faults.withLock { $0.shortWriteOnly = 2 }
        try log.append(Array("whole-record".utf8))
        #expect(try lines(path) == ["whole-record"])
    }

    @Test func aFailedFsyncIsCutBack() throws {
        let path = try tempDir() + "/log"
        let io = FaultyIO()
        let log = try AppendLog(path: path, io: io) { _ in true }
        try log.append(Array("a".utf8))
        io.faults.withLock { $0.failNextFsync = true }
        let e = #expect(throws: AppendLogError.self) { try log.append(Array("b".utf8)) }
        #expect(e?.code == .write)
        try log.append(Array("c".utf8))
        #expect(try lines(path) == ["a", "c"])
    }

    @Test func aWriteThatCannotBeCutBackRefusesLaterAppends() throws {
        let path = try tempDir() + "/log"
        let io = FaultyIO()
        let log = try AppendLog(path: path, io: io) { _ in true }
        try log.append(Array("a".utf8))
        io.faults.withLock {
            $0.shortWriteThenFail = 2
            $0.failTruncate = true
        }
        #expect(throws: AppendLogError.self) { try log.append(Array("bbbbbb".utf8)) }
        io.faults.withLock { $0.failTruncate = false }
        let e = #expect(throws: AppendLogError.self) { try log.append(Array("c".utf8)) }
        #expect(e?.code == .damaged)
        // Reopening repairs: the fragment is the torn last line and is cut.
        #expect(try lines(path) == ["a"])
        let reopened = try AppendLog(path: path) { _ in true }
        try reopened.append(Array("c".utf8))
        #expect(try lines(path) == ["a", "c"])
    }

    @Test func aMalformedLineBeforeTheLastFailsClosed() throws {
        let path = try tempDir() + "/log"
        try "good\nbad!\ngood\n".write(toFile: path, atomically: true, encoding: .utf8)
        let e = #expect(throws: AppendLogError.self) { try AppendLog(path: path) { $0.first != UInt8(ascii: "b") } }
        #expect(e?.code == .corrupt)
        #expect(e?.message.contains("line 2") == true)
        // An unreadable last line (even newline-terminated) is torn: dropped and cut.
        try "good\nbad!\n".write(toFile: path, atomically: true, encoding: .utf8)
        _ = try AppendLog(path: path) { $0.first != UInt8(ascii: "b") }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "good\n")
    }

    @Test func aFailedRewriteKeepsTheOldLogInUse() throws {
        let path = try tempDir() + "/log"
        let io = FaultyIO()
        let log = try AppendLog(path: path, io: io) { _ in true }
        try log.append(Array("a".utf8))
        io.faults.withLock { $0.failOpenContaining = ".rewrite" }
        #expect(throws: AppendLogError.self) { try log.rewrite([Array("compacted".utf8)]) }
        try log.append(Array("b".utf8))
        #expect(try lines(path) == ["a", "b"])
        // A successful rewrite: later appends land in the new file, not in an unlinked inode.
        io.faults.withLock { $0.failOpenContaining = nil }
        try log.rewrite([Array("compacted".utf8)])
        try log.append(Array("after".utf8))
        #expect(try lines(path) == ["compacted", "after"])
    }

    @Test func aRenamedAwayLogIsNotWrittenAfterRewrite() throws {
        // Opens failing after the rename (the old implementation reopened the path after renaming,
        // and on failure kept appending to the unlinked old inode).
        let path = try tempDir() + "/log"
        let io = FaultyIO()
        let log = try AppendLog(path: path, io: io) { _ in true }
        try log.append(Array("a".utf8))
        try log.rewrite([Array("a".utf8)])
        io.faults.withLock { $0.failOpenContaining = "/log" }
        try log.append(Array("b".utf8))
        io.faults.withLock { $0.failOpenContaining = nil }
        #expect(try lines(path) == ["a", "b"])
    }

    @Test func aReadOnlyDirectoryIsAClearError() throws {
        let dir = try tempDir()
        let io = FaultyIO()
        if getuid() == 0 {
            // root ignores directory permissions: the kernel's answer on a read-only mount is injected.
            io.faults.withLock { $0.failOpenContaining = dir }
        } else {
            chmod(dir, 0o500)
        }
        defer { chmod(dir, 0o700) }
        let e = #expect(throws: AppendLogError.self) { try AppendLog(path: dir + "/log", io: io) { _ in true } }
        #expect(e?.code == .open)
        #expect(e?.message.contains(dir + "/log") == true)
        #expect(!FileManager.default.fileExists(atPath: dir + "/log"))
    }

    @Test func aMissingDirectoryIsNamed() throws {
        let e = #expect(throws: AppendLogError.self) { try AppendLog(path: "/nonexistent-felhom/dir/log") { _ in true } }
        #expect(e?.message.contains("/nonexistent-felhom/dir") == true)
        #expect(e?.message.contains("does not exist") == true)
    }

    @Test func durableFileReplacesWholeAndKeepsMode() throws {
        let path = try tempDir() + "/host.json"
        try DurableFile.write(Array("one".utf8), to: path)
        try DurableFile.write(Array("two".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
        let io = FaultyIO()
        io.faults.withLock { $0.shortWriteThenFail = 1 }
        #expect(throws: AppendLogError.self) { try DurableFile.write(Array("three".utf8), to: path, io: io) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(leftovers == ["host.json"])
    }
}

@Suite("Validation patterns and terminal text")
struct PatternTests {
    /// Issue 10 item 16: `$` also matches before a final newline; validations anchor at the true end.
    @Test func aTrailingNewlineIsNotAccepted() {
        #expect("abc\n".range(of: "^[a-z]+$", options: .regularExpression) != nil, "ICU's $ (the trap)")
        #expect(!Pattern.whole("abc\n", "[a-z]+"))
        #expect(Pattern.whole("abc", "[a-z]+"))
        #expect(!Pattern.whole("xabc", "abc|x"))
        #expect(throws: ContractError.self) {
            try DesiredState.decode(Data(#"{"guests":[{"vmid":120,"name":"web\n","cpu":1,"memory_mb":512,"disk_gb":4}]}"#.utf8))
        }
    }

    /// Issue 10 item 11: every printed string escaped outside printable ASCII.
    @Test func terminalTextEscapesEverythingOutsidePrintableASCII() {
        #expect(TerminalText.escaped("guest 120") == "guest 120")
        #expect(TerminalText.escaped("\u{1B}[2K\rguest 121") == "\\u{1B}[2K\\u{D}guest 121")
        #expect(TerminalText.escaped("12\u{202E}1") == "12\\u{202E}1")
        #expect(TerminalText.escaped("a\\u{41}") == "a\\\\u{41}")
    }

    /// Issue 20: bootstrap's lines keep our own wording (— →) and lose a hub's control characters.
    @Test func withoutControlsKeepsWordingAndDisarmsControls() {
        #expect(TerminalText.withoutControls("made: current → a — ok\nnext") == "made: current → a — ok\nnext")
        #expect(TerminalText.withoutControls("hub said \u{1B}[2J\rgone\u{9B}") == "hub said \\u{1B}[2J\\u{D}gone\\u{9B}")
        #expect(TerminalText.withoutControls("host 12\u{202E}1\u{2067}") == "host 12\\u{202E}1\\u{2067}")
    }

    /// Operator-written documents are strict (item 9); reports stay lenient.
    @Test func unknownKeysAreNamed() throws {
        let e = #expect(throws: ContractError.self) {
            try DesiredState.decodeStrict(Data(#"{"guests":[{"vmid":120,"nmae":"web","name":"web","cpu":1,"memory_mb":512,"disk_gb":4}]}"#.utf8))
        }
        #expect(e?.path == "$.guests[0].nmae")
        #expect(throws: ContractError.self) { try DesiredState.decodeStrict(Data(#"{"guests":[],"storage_policy":{"keep":3}}"#.utf8)) }
        _ = try DesiredState.decodeStrict(Data(#"{"guests":[],"versions":{"agent":"1.2.3","anything":"0.1.0"}}"#.utf8))
        _ = try DesiredState.decode(Data(#"{"guests":[],"future_field":1}"#.utf8))
        let loader = ConfigLoader(environmentPrefix: "X", keys: [.init("database"), .init("pve.host")])
        let dir = NSTemporaryDirectory() + "felhom-cfg-\(UUID().uuidString).json"
        try #"{"databse":"sqlite:x","pve":{"host":"a","hots":"b"}}"#.write(toFile: dir, atomically: true, encoding: .utf8)
        struct C: Decodable { var database: String? }
        let ce = #expect(throws: ConfigError.self) { try loader.load(C.self, file: dir, environment: [:]) }
        #expect(ce?.message.contains("$.databse") == true)
        #expect(ce?.message.contains(dir) == true)
    }
}
