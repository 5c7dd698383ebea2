import FelhomAgent
import Foundation
import Testing

@Suite struct PBSKeyTests {
    /// The known answer of PBS's own `fingerprint_checks` test (WAVE2-FACTS §5.2): key bytes 0x00…0x1f.
    @Test func fingerprintMatchesPBSsKnownAnswer() throws {
        let raw = Array(UInt8(0)...UInt8(31))
        let expected = "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"
        #expect(PBSKey.fingerprint(rawKey: raw) == expected)
        let json =
            #"{"kdf":null,"created":"2026-11-30T10:00:00+01:00","modified":"2026-11-30T10:00:00+01:00","data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","fingerprint":"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"}"#
        #expect(try PBSKey(json: Data(json.utf8)).fingerprint == expected)
        // Without a stored fingerprint it is computed.
        #expect(try PBSKey(json: Data(#"{"kdf":null,"data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#.utf8)).fingerprint == expected)
        #expect(PBSKey.normalized("0EABD4460B6EB9CA345023DEE2B778C790E54A1683B9659C0A57AE199090159B") == expected)
    }

    @Test func badKeyFilesAreRefusedNamingWhy() {
        let cases: [(String, String)] = [
            ("not json", "not JSON"),
            (#"{"kdf":{"Scrypt":{"n":65536,"r":8,"p":1,"salt":"AA=="}},"data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#, "passphrase"),
            (#"{"kdf":null,"data":"AAEC"}"#, "32-byte"),
            (#"{"kdf":null,"data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","fingerprint":"00:11"}"#, "names fingerprint"),
        ]
        for (json, why) in cases {
            do {
                _ = try PBSKey(json: Data(json.utf8))
                Issue.record("accepted \(json)")
            } catch { #expect(error.code == .keyUnreadable && error.message.contains(why), "\(error)") }
        }
    }
}
