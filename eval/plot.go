package eval

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WritePlot draws the averages as an SVG with two panels, both against
// the context length: the accuracy over all tasks of every setting, and
// each Star setting's phase-1 speedup over the exact mode. Made with
// gonum.org/v1/plot.
func WritePlot(w io.Writer, avgs []Average, settings []Setting) error {
	c := vgsvg.New(12*vg.Inch, 4.5*vg.Inch)
	if err := drawPlot(draw.New(c), avgs, settings); err != nil {
		return err
	}
	_, err := c.WriteTo(w)
	return err
}

// drawPlot draws the two panels on c.
func drawPlot(c draw.Canvas, avgs []Average, settings []Setting) error {
	acc, spd := newPanel("Accuracy over the tasks (RULER, %)", "accuracy (%)"), newPanel("Phase-1 speedup over the exact mode", "speedup (x)")
	var lengths []float64
	for i, s := range settings {
		var a, x plotter.XYs
		for _, v := range avgs {
			if v.setting != i {
				continue
			}
			a = append(a, plotter.XY{X: float64(v.Length), Y: v.Accuracy})
			if v.SpeedupPhase1 != nil {
				x = append(x, plotter.XY{X: float64(v.Length), Y: *v.SpeedupPhase1})
			}
			lengths = append(lengths, float64(v.Length))
		}
		if err := addSeries(acc, s.String(), a, i); err != nil {
			return err
		}
		if err := addSeries(spd, s.String(), x, i); err != nil {
			return err
		}
	}
	for _, p := range []*plot.Plot{acc, spd} {
		lengthAxis(p, lengths)
	}
	// room above the lines for the legends
	acc.Y.Min, acc.Y.Max = 0, 100*1.3
	acc.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 25, Label: "25"}, {Value: 50, Label: "50"}, {Value: 75, Label: "75"}, {Value: 100, Label: "100"}})
	spd.Y.Min, spd.Y.Max = 0, math.Max(spd.Y.Max, 1)*1.3
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 2, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align([][]*plot.Plot{{acc, spd}}, tiles, c)
	acc.Draw(canvases[0][0])
	spd.Draw(canvases[0][1])
	return nil
}

func newPanel(title, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "context length (tokens)"
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// palette gives each setting its colour.
var palette = []color.RGBA{
	{0, 0, 0, 255}, {31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255},
	{255, 127, 14, 255}, {148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255},
}

// addSeries adds one setting's line and points.
func addSeries(p *plot.Plot, name string, xys plotter.XYs, i int) error {
	if len(xys) == 0 {
		return nil
	}
	sort.Slice(xys, func(a, b int) bool { return xys[a].X < xys[b].X })
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	col := palette[i%len(palette)]
	l.Color, pts.Color = col, col
	pts.Shape = draw.CircleGlyph{}
	if i == 0 {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

// lengthAxis puts a tick at every length, labelled as 4K, 32K, 512.
func lengthAxis(p *plot.Plot, lengths []float64) {
	sort.Float64s(lengths)
	var ticks []plot.Tick
	for i, l := range lengths {
		if i > 0 && l == lengths[i-1] {
			continue
		}
		ticks = append(ticks, plot.Tick{Value: l, Label: lengthLabel(int(l))})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	if len(ticks) > 1 && lengths[len(lengths)-1] >= 4*lengths[0] {
		p.X.Scale = plot.LogScale{}
	}
	if len(ticks) > 0 { // some room on each side of the points
		lo, hi := lengths[0], lengths[len(lengths)-1]
		if p.X.Scale != nil {
			if _, log := p.X.Scale.(plot.LogScale); log {
				p.X.Min, p.X.Max = lo/1.25, hi*1.25
				return
			}
		}
		pad := math.Max((hi-lo)/10, lo/10)
		p.X.Min, p.X.Max = lo-pad, hi+pad
	}
}

func lengthLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dK", n/1024)
	}
	return fmt.Sprint(n)
}
