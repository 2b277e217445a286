package plot

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/aegis-mesh/aegis/bench/hist"
)

func curve(scale int64) []hist.Point {
	h := hist.New()
	for v := int64(1); v <= 10_000; v++ {
		h.Record(v * scale)
	}
	return h.Curve(10)
}

func TestRenderDrawsEverySeries(t *testing.T) {
	series := []Series{{"aegis", curve(1)}, {"opa", curve(40)}, {"opa_wasm", curve(10)}}
	img, err := Render("engine latency", series)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Fatalf("size %v", b)
	}
	counts := map[int]int{}
	for y := range height {
		for x := range width {
			c := img.RGBAAt(x, y)
			for i := range series {
				if c == Color(i) {
					counts[i]++
				}
			}
		}
	}
	for i, s := range series {
		// A curve across the plot plus its legend swatch is hundreds of pixels.
		if counts[i] < 300 {
			t.Errorf("series %s: %d pixels of its colour", s.Name, counts[i])
		}
	}
}

func TestRenderRejectsEmpty(t *testing.T) {
	for _, s := range [][]Series{nil, {{"empty", nil}}} {
		if _, err := Render("x", s); err == nil {
			t.Errorf("Render(%v) drew a chart with no points", s)
		}
	}
}

func TestWriteFileIsPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.png")
	if err := WriteFile(path, "t", []Series{{"a", curve(1)}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != width {
		t.Fatalf("decode: %v", err)
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "p.png"), "t", []Series{{"a", curve(1)}}); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestAxes(t *testing.T) {
	cases := []struct {
		q    float64
		d    float64
		want string
	}{{0, 0, "0"}, {0.9, 1, "90"}, {0.99, 2, "99"}, {0.999, 3, "99.9"}, {0.9999, 4, "99.99"}}
	for _, c := range cases {
		if got := decades(c.q); got < c.d-1e-9 || got > c.d+1e-9 {
			t.Errorf("decades(%v) = %v, want %v", c.q, got, c.d)
		}
		if got := percentileLabel(c.d); got != c.want {
			t.Errorf("percentileLabel(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	for us, want := range map[float64]string{0.1: "0.1", 1: "1", 100: "100", 1000: "1ms", 100000: "100ms", 1e6: "1s"} {
		if got := usLabel(us); got != want {
			t.Errorf("usLabel(%v) = %q, want %q", us, got, want)
		}
	}
	for _, r := range "0123456789abcdefghijklmnopqrstuvwxyz.,:-_()%/=" {
		g, ok := glyphs[r]
		if !ok || g == [7]byte{} {
			t.Errorf("glyph %q missing or blank", r)
		}
	}
}
