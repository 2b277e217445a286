package proxy

import (
	"bytes"
	"testing"
)

// FuzzFramer: the framer's verdict and released bytes do not depend on how
// the stream is split into reads, and it never releases more than it got.
func FuzzFramer(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01",
		"\r\nGET / HTTP/1.1\nHost: x\n\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := framer{maxHead: 1024}
		outWhole, vWhole := whole.feed(in, nil)
		split := framer{maxHead: 1024}
		var outSplit []byte
		var vSplit *Violation
		n := int(step)%7 + 1
		for i := 0; i < len(in) && vSplit == nil; i += n {
			outSplit, vSplit = split.feed(in[i:min(i+n, len(in))], outSplit)
		}
		if (vWhole == nil) != (vSplit == nil) || (vWhole != nil && vWhole.Code != vSplit.Code) {
			t.Fatalf("verdict depends on read sizes: whole %v, split by %d %v", vWhole, n, vSplit)
		}
		if !bytes.Equal(outWhole, outSplit) {
			t.Fatalf("released bytes depend on read sizes:\n%q\n%q", outWhole, outSplit)
		}
		// Blank lines between requests are dropped, nothing else: what
		// is released is the input minus those.
		if len(outWhole) > len(in) {
			t.Fatalf("released %d bytes from %d", len(outWhole), len(in))
		}
	})
}
