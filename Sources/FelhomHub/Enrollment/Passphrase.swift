import Crypto
import Foundation
import _CryptoExtras

/// Retrieval passphrases: random words from a Hungarian list, shown once, stored as PBKDF2-SHA256.
public enum Passphrase {
    /// 256 common Hungarian words without accents-only look-alikes, each 3–9 letters.
    public static let words: [String] = """
        alma ablak ajto akac alvas arany asztal auto bab bagoly bakancs balta bank barack barat bator beka belyeg \
        bicikli birka bogar bokor borso bunda burgonya busz cica cipo citrom csalad csepp cserep csiga csillag csizma \
        csoki csonak csupor dalos delfin dinnye dio dob dombon dugo ebed eger egres elefant emelet ernyo erdo eso \
        fakanal fecske fenyo fesu folyo forras fotel fuge fuzet galamb gomba gomb gyertya gyongy gyumolcs hajo hal \
        hamu harang has hattyu haz hegy hid hinta hold homok hordo hurok husz ibolya iglu ima iras iroda jaguar jatek \
        jeg juhar kabat kacsa kakas kalap kanal kapu kard kasza kecske kefe kenyer kert kes kilines kincs kocka kolbasz \
        konyv kopasz kosar kovacs kreta kulcs kut labda lampa lapat level liba liget lo malom mak mazsola meggy mez \
        mokus motor nap narancs nyak nyul olaj oroszlan ostor ozon padlas papir paprika patak pek pillango pipacs pohar \
        polc posta pulyka rak rece repa retek rigo roka rozsa sajt sapka sas sator sereg sin sip sonka sovany szamar \
        szek szel szilva szita szoba szolo szurke tal tanya tarka teve teli tenger tojas toll torta traktor tulipan \
        tuz tyuk udvar ugorka uveg vaj vasut veder verem viz voros zab zaszlo zebra zeller zold zokni zongora zsak \
        zsemle zsiraf akna alom anyag apro arc bolt bors csend dal dio2 eper fagy fal fold ful gerle gyik ho ikra \
        ir kagylo kaktusz karika kerek kokusz korte lecso lepke lo2 mese nyar okor orgona ozike pont rozmaring sarga \
        sirály sokk suto tea tolgy ujj vihar
        """.split(separator: " ").map(String.init).filter { !$0.contains(where: { $0.isNumber }) && $0.allSatisfy { $0.isASCII } }

    /// A new passphrase of `count` (≥ 4) words joined by '-'.
    public static func generate(words count: Int = 6) -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<max(4, count)).map { _ in words[Int.random(in: 0..<words.count, using: &rng)] }.joined(separator: "-")
    }

    static let rounds = 210_000

    /// `pbkdf2-sha256$ROUNDS$SALT$HASH` (base64).
    public static func hash(_ passphrase: String) throws -> String {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(normalize(passphrase).utf8), salt: salt, using: .sha256, outputByteCount: 32, rounds: rounds)
        let bytes = key.withUnsafeBytes { Data($0) }
        return "pbkdf2-sha256$\(rounds)$\(Data(salt).base64EncodedString())$\(bytes.base64EncodedString())"
    }

    /// A well-formed hash no passphrase matches (an all-zero key): checking against it costs the
    /// same KDF work as a real one, so an unknown domain answers in the same time as a known one.
    public static let decoy =
        "pbkdf2-sha256$\(rounds)$\(Data(repeating: 0x5A, count: 16).base64EncodedString())$\(Data(count: 32).base64EncodedString())"

    /// Constant-time check against a stored hash.
    public static func verify(_ passphrase: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$")
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let r = Int(parts[1]), r >= rounds,
            let salt = Data(base64Encoded: String(parts[2])), let want = Data(base64Encoded: String(parts[3])),
            let key = try? KDF.Insecure.PBKDF2.deriveKey(
                from: Array(normalize(passphrase).utf8), salt: salt, using: .sha256,
                outputByteCount: want.count, rounds: r)
        else { return false }
        let got = key.withUnsafeBytes { Data($0) }
        return KeyAuthority.constantTimeEqual([UInt8](got), [UInt8](want))
    }

    /// Case, surrounding space and separators (space, '-', '.') do not matter to people typing it.
    static func normalize(_ s: String) -> String {
        s.lowercased().split(whereSeparator: { $0 == " " || $0 == "-" || $0 == "." || $0 == "\t" }).joined(separator: "-")
    }
}
