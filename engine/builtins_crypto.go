package engine

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
)

//go:noinline
func digest(newHash func() hash.Hash) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		s, err := argString(args, 0)
		if err != nil {
			return nil, err
		}
		h := newHash()
		h.Write([]byte(s))
		return stringValue(hex.EncodeToString(h.Sum(nil))), nil
	}
}

//go:noinline
func hmacDigest(newHash func() hash.Hash) builtinImpl {
	return func(_ *evalState, args []Value) (Value, error) {
		msg, key, err := twoStrings(args)
		if err != nil {
			return nil, err
		}
		m := hmac.New(newHash, []byte(key))
		m.Write([]byte(msg))
		return stringValue(hex.EncodeToString(m.Sum(nil))), nil
	}
}

var (
	bCryptoMD5        = digest(md5.New)
	bCryptoSHA1       = digest(sha1.New)
	bCryptoSHA256     = digest(sha256.New)
	bCryptoHMACMD5    = hmacDigest(md5.New)
	bCryptoHMACSHA1   = hmacDigest(sha1.New)
	bCryptoHMACSHA256 = hmacDigest(sha256.New)
	bCryptoHMACSHA512 = hmacDigest(sha512.New)
)

func bCryptoHMACEqual(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	return Bool(hmac.Equal([]byte(a), []byte(b))), nil
}
