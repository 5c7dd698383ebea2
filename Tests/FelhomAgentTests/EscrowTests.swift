import Crypto
import FelhomAgent
import FelhomCore
import Foundation
import Testing

@Suite struct RecoveryCodeTests {
    @Test func aCodeHas80RandomBitsPrintedInFiveGroupsAndReadsBackForgivingly() throws {
        let code = RecoveryCode.generate()
        let printed = code.printed
        #expect(printed.count == 24 && printed.split(separator: "-").map(\.count) == [4, 4, 4, 4, 4])
        #expect(try RecoveryCode(parsing: printed) == code)
        #expect(try RecoveryCode(parsing: printed.lowercased().replacingOccurrences(of: "-", with: " ")) == code)
        #expect("\(code)" == "RecoveryCode(…)", "never printed by accident")
        #expect(Set((0..<200).map { _ in RecoveryCode.generate().printed }).count == 200)
    }

    @Test func crockfordLookalikesReadAsDigits() throws {
        // A code whose body has 0s and 1s, typed with O, I and L.
        var found: RecoveryCode?
        for _ in 0..<2000 {
            let c = RecoveryCode.generate()
            if c.printed.contains("0") && c.printed.contains("1") {
                found = c
                break
            }
        }
        let code = try #require(found)
        let typed = code.printed.replacingOccurrences(of: "0", with: "O").replacingOccurrences(of: "1", with: "l")
        #expect(try RecoveryCode(parsing: typed) == code)
    }

    @Test func aMistypedOrMalformedCodeIsRefusedWithoutEchoingIt() throws {
        let code = RecoveryCode.generate().printed
        var chars = Array(code)
        chars[0] = chars[0] == "2" ? "3" : "2"
        for bad in [String(chars), String(code.dropLast(2)), code + "A", code.replacingOccurrences(of: "-", with: "!")] {
            do {
                _ = try RecoveryCode(parsing: bad)
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.code == .badCode)
                #expect(!error.message.contains(bad) && !error.message.contains(String(code.prefix(9))))
            }
        }
    }
}

@Suite struct EscrowEnvelopeTests {
    /// Fast parameters for tests (the standard ones are 2^15).
    let fast = EscrowEnvelope.KDFParams(n: 1 << 14, r: 8, p: 1)

    @Test func aKeyWrappedUnderACodeOpensOnlyWithThatCode() throws {
        let (json, raw) = PBSKey.generate()
        let code = RecoveryCode.generate()
        let (env, wrapping) = try EscrowEnvelope.wrap(rawKey: raw, code: code, params: fast)
        #expect(env.keyFingerprint == (try PBSKey(json: json)).fingerprint)
        let decoded = try EscrowEnvelope.decode(env.encoded())
        #expect(try decoded.unwrap(code: code) == raw)
        #expect(try decoded.unwrap(with: wrapping) == raw, "the box's kept wrapping key opens it too (the drill)")
        let text = String(decoding: env.encoded(), as: UTF8.self)
        #expect(!text.contains(Data(raw).base64EncodedString()) && !text.contains(code.printed), "neither key nor code is in it")
        #expect(throws: EscrowError(.unwrapFailed, "the envelope does not open with this recovery code (wrong code, or the envelope was altered)")) {
            try decoded.unwrap(code: RecoveryCode.generate())
        }
    }

    @Test func everyAlteredFieldFailsAuthentication() throws {
        let (_, raw) = PBSKey.generate()
        let code = RecoveryCode.generate()
        let (env, _) = try EscrowEnvelope.wrap(rawKey: raw, code: code, params: fast)
        let (_, other) = PBSKey.generate()
        var alterations: [EscrowEnvelope] = []
        var a = env
        a.keyFingerprint = PBSKey.fingerprint(rawKey: other)
        alterations.append(a)
        a = env
        a.created = "2020-01-01T00:00:00Z"
        alterations.append(a)
        a = env
        var sealed = Array(Data(base64Encoded: env.ciphertext) ?? Data())
        sealed[3] ^= 1
        a.ciphertext = Data(sealed).base64EncodedString()
        alterations.append(a)
        a = env
        a.kdfParams.r = 9
        alterations.append(a)
        for altered in alterations {
            #expect(throws: EscrowError.self) { try altered.unwrap(code: code) }
            do { _ = try altered.unwrap(code: code) } catch { #expect(error.code == .unwrapFailed, "\(error)") }
        }
    }

    @Test func aHostileEnvelopeIsRefusedBeforeAnyWork() throws {
        let (_, raw) = PBSKey.generate()
        let (env, _) = try EscrowEnvelope.wrap(rawKey: raw, code: RecoveryCode.generate(), params: fast)
        var huge = env
        huge.kdfParams.n = 1 << 30
        var odd = env
        odd.kdfParams.n = 50_000
        var weak = env
        weak.kdfParams.n = 1 << 4
        var format = env
        format.format = "felhom-escrow-v9"
        for bad in [huge, odd, weak, format] {
            do {
                _ = try bad.unwrap(code: RecoveryCode.generate())
                Issue.record("accepted \(bad.kdfParams)")
            } catch { #expect(error.code == .badEnvelope) }
        }
        #expect(throws: EscrowError.self) { try EscrowEnvelope.decode(Data("{}".utf8)) }
        #expect(throws: EscrowError.self) { try EscrowEnvelope.decode(Data(repeating: 0x20, count: 10_000)) }
    }

    /// The operator-managed tier's envelope: every field is authenticated (swapping the ephemeral
    /// or recipient key, or the KDF, fails), hostile shapes are refused before any work, the
    /// customer-tier encoding is unchanged (`n`, `r`, `p` only), and the key texts round-trip.
    @Test func anOperatorManagedEnvelopeOpensOnlyWithTheOperatorKeyAndEveryFieldCounts() throws {
        let (_, raw) = PBSKey.generate()
        let op = Curve25519.KeyAgreement.PrivateKey()
        let (env, wrapping) = try EscrowEnvelope.wrap(rawKey: raw, operatorKey: op.publicKey)
        #expect(try env.unwrap(with: env.wrappingKey(operatorKey: op)) == raw)
        #expect(try env.unwrap(with: wrapping) == raw, "the box's kept wrapping key opens it (the drill)")
        let doc = try JSONValue.parse(env.encoded())
        #expect(doc["kdf_params"]?.objectValue?.keys.sorted() == ["ephemeral", "recipient"])
        let (scrypt, _) = try EscrowEnvelope.wrap(rawKey: raw, code: RecoveryCode.generate(), params: fast)
        #expect(try JSONValue.parse(scrypt.encoded())["kdf_params"]?.objectValue?.keys.sorted() == ["n", "p", "r"])

        let other = Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation.base64EncodedString()
        var swappedEphemeral = env
        swappedEphemeral.kdfParams.ephemeral = other
        #expect(
            (#expect(throws: EscrowError.self) { try swappedEphemeral.unwrap(with: swappedEphemeral.wrappingKey(operatorKey: op)) })?.code
                == .unwrapFailed)
        var scryptParams = env
        scryptParams.kdfParams.n = 1 << 15
        #expect((#expect(throws: EscrowError.self) { try scryptParams.validate() })?.code == .badEnvelope)
        var shortKey = env
        shortKey.kdfParams.recipient = "AAAA"
        #expect((#expect(throws: EscrowError.self) { try shortKey.validate() })?.code == .badEnvelope)
        var asScrypt = env
        asScrypt.kdf = "scrypt"
        #expect(throws: EscrowError.self) { try asScrypt.validate() }

        let line = OperatorEscrowKey.publicLine(op.publicKey)
        #expect(try OperatorEscrowKey.parsePublic(line + " operator@felhom").rawRepresentation == op.publicKey.rawRepresentation)
        #expect(try OperatorEscrowKey.parsePrivate(OperatorEscrowKey.privateText(op)).rawRepresentation == op.rawRepresentation)
        let secret = op.rawRepresentation.base64EncodedString()
        let bad = #expect(throws: EscrowError.self) { try OperatorEscrowKey.parsePrivate("felhom-escrow-x25519 \(secret)") }
        #expect(bad?.code == .badOperatorKey && bad?.message.contains(secret) == false, "the message never quotes the key")
        #expect(throws: EscrowError.self) { try OperatorEscrowKey.parsePublic("ssh-ed25519 AAAA") }
    }

    @Test func theStandardParametersAreRecordedAndWork() throws {
        let (_, raw) = PBSKey.generate()
        let code = RecoveryCode.generate()
        let (env, _) = try EscrowEnvelope.wrap(rawKey: raw, code: code)
        #expect(env.kdfParams == .standard && env.kdf == "scrypt" && env.format == "felhom-escrow-v1")
        #expect(try env.unwrap(code: code) == raw)
    }

    @Test func aGeneratedKeyFileIsWhatPBSReads() throws {
        let (json, raw) = PBSKey.generate()
        let key = try PBSKey(json: json)
        #expect(key.fingerprint == PBSKey.fingerprint(rawKey: raw))
        #expect(try PBSKey.rawKey(json: json) == raw)
        let doc = try JSONValue.parse(json)
        #expect(doc["kdf"] == .null && doc["fingerprint"]?.stringValue == key.fingerprint)
        // PBS's own known answer still holds for the file form.
        let known = PBSKey.keyFileJSON(rawKey: Array(0..<32))
        #expect(
            try PBSKey(json: known).fingerprint == "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b")
    }
}

/// The cost of wrapping and unwrapping at the standard scrypt parameters (docs/performance.md).
/// Runs only with `FELHOM_BENCH_ESCROW=N` (`scripts/bench-escrow`): it measures, it asserts no speed.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["FELHOM_BENCH_ESCROW"] != nil))
struct EscrowCostBench {
    @Test func wrapAndUnwrapAtTheStandardParameters() throws {
        let runs = Int(ProcessInfo.processInfo.environment["FELHOM_BENCH_ESCROW"] ?? "") ?? 5
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        var wraps: [Double] = []
        var unwraps: [Double] = []
        var drills: [Double] = []
        for _ in 0..<runs {
            let (_, raw) = PBSKey.generate()
            let code = RecoveryCode.generate()
            var t = ContinuousClock.now
            let (env, key) = try EscrowEnvelope.wrap(rawKey: raw, code: code)
            wraps.append(seconds(ContinuousClock.now - t))
            t = ContinuousClock.now
            #expect(try env.unwrap(code: code) == raw)
            unwraps.append(seconds(ContinuousClock.now - t))
            t = ContinuousClock.now
            #expect(try env.unwrap(with: key) == raw)
            drills.append(seconds(ContinuousClock.now - t))
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        print(
            String(
                format:
                    "escrow (scrypt n=2^15 r=8 p=1, %d runs): wrap median %.3f s, unwrap with the code %.3f s, drill unwrap with the kept key %.4f s",
                runs, median(wraps), median(unwraps), median(drills)))
    }
}
