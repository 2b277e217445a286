// Package plot draws latency percentile curves as PNG with nothing but the
// standard library: a log-scaled percentile x-axis (0, 90, 99, 99.9, ...),
// a log-scaled latency y-axis in µs, one line per series and a legend.
// Log scales on both axes keep a 5 µs engine and a 100 µs baseline on one
// readable chart, and put the tail where it can be seen.
package plot

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/aegis-mesh/aegis/bench/hist"
)

// Series is one curve: values in nanoseconds by quantile.
type Series struct {
	Name   string
	Points []hist.Point
}

const (
	width, height            = 900, 540
	left, right, top, bottom = 90, 60, 50, 70
	scale                    = 2 // text is drawn at twice the font's size
)

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{0, 0, 0, 255}
	grid  = color.RGBA{225, 225, 225, 255}
	// palette is colour-blind friendly (Okabe–Ito).
	palette = []color.RGBA{
		{0, 114, 178, 255}, {213, 94, 0, 255}, {0, 158, 115, 255}, {204, 121, 167, 255},
		{230, 159, 0, 255}, {86, 180, 233, 255}, {0, 0, 0, 255},
	}
)

// Color is series i's line colour.
func Color(i int) color.RGBA { return palette[i%len(palette)] }

// Render draws the chart. It fails when no series has a point.
func Render(title string, series []Series) (*image.RGBA, error) {
	minV, maxV, maxD := math.Inf(1), 0.0, 2.0
	for _, s := range series {
		for _, p := range s.Points {
			v := math.Max(float64(p.Value)/1e3, 0.01)
			minV, maxV = math.Min(minV, v), math.Max(maxV, v)
			maxD = math.Max(maxD, decades(p.Quantile))
		}
	}
	if maxV == 0 {
		return nil, errors.New("plot: no points")
	}
	maxD = math.Ceil(maxD - 1e-9)
	lo, hi := math.Floor(math.Log10(minV)), math.Ceil(math.Log10(maxV))
	if hi <= lo {
		hi = lo + 1
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), white)
	pw, ph := width-left-right, height-top-bottom
	x := func(d float64) int { return left + int(d/maxD*float64(pw)+0.5) }
	y := func(us float64) int {
		return top + ph - int((math.Log10(math.Max(us, 0.01))-lo)/(hi-lo)*float64(ph)+0.5)
	}
	// Grid and tick labels.
	for d := 0.0; d <= maxD; d++ {
		line(img, x(d), top, x(d), top+ph, grid, 1)
		label := percentileLabel(d)
		text(img, x(d)-textWidth(label)/2, top+ph+10, label, black)
	}
	for e := lo; e <= hi; e++ {
		us := math.Pow(10, e)
		line(img, left, y(us), left+pw, y(us), grid, 1)
		label := usLabel(us)
		text(img, left-10-textWidth(label), y(us)-7*scale/2, label, black)
	}
	line(img, left, top, left, top+ph, black, 2)
	line(img, left, top+ph, left+pw, top+ph, black, 2)
	text(img, left+pw/2-textWidth("percentile")/2, height-bottom/2+6, "percentile", black)
	text(img, 8, top-28, "us", black)
	text(img, left, 12, title, black)
	// Curves.
	for i, s := range series {
		c := Color(i)
		for j := 1; j < len(s.Points); j++ {
			a, b := s.Points[j-1], s.Points[j]
			line(img, x(decades(a.Quantile)), y(float64(a.Value)/1e3), x(decades(b.Quantile)), y(float64(b.Value)/1e3), c, 2)
		}
	}
	// Legend, top left inside the plot, where curves start low.
	ly := top + 12
	for i, s := range series {
		line(img, left+16, ly+7, left+46, ly+7, Color(i), 3)
		text(img, left+54, ly, s.Name, black)
		ly += 8*scale + 6
	}
	return img, nil
}

// WriteFile renders and writes a PNG.
func WriteFile(path, title string, series []Series) error {
	img, err := Render(title, series)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// decades maps quantile q to log10(1/(1-q)): 0 → 0, 0.9 → 1, 0.99 → 2.
func decades(q float64) float64 {
	if q >= 1 {
		return 7
	}
	return math.Log10(1 / (1 - q))
}

// percentileLabel names the percentile d decades out: 0, 90, 99, 99.9, ...
func percentileLabel(d float64) string {
	if d == 0 {
		return "0"
	}
	p := 100 * (1 - math.Pow(10, -d))
	return strconv.FormatFloat(p, 'f', int(math.Max(d-2, 0)), 64)
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	for py := r.Min.Y; py < r.Max.Y; py++ {
		for px := r.Min.X; px < r.Max.X; px++ {
			img.SetRGBA(px, py, c)
		}
	}
}

// line draws a segment of the given thickness (Bresenham, square pen).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, thick int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		fill(img, image.Rect(x0-thick/2, y0-thick/2, x0-thick/2+thick, y0-thick/2+thick).Intersect(img.Bounds()), c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func textWidth(s string) int { return len([]rune(s)) * 6 * scale }

// text draws s with its top-left corner at (x, y).
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToLower(s) {
		g, ok := glyphs[unicode.ToLower(r)]
		if ok {
			for row := range 7 {
				for col := range 5 {
					if g[row]&(0x10>>col) != 0 {
						fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale).Intersect(img.Bounds()), c)
					}
				}
			}
		}
		x += 6 * scale
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// usLabel prints a power of ten of microseconds compactly: 0.1, 1, 10,
// 100, then 1ms, 10ms, 100ms, 1s.
func usLabel(us float64) string {
	switch {
	case us >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', -1, 64) + "s"
	case us >= 1e3:
		return strconv.FormatFloat(us/1e3, 'f', -1, 64) + "ms"
	}
	return strconv.FormatFloat(us, 'f', -1, 64)
}
