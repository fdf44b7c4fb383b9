package eval

import (
	"math/rand/v2"
	"strings"
)

// The words RULER's tasks draw from. RULER takes them from the
// wonderwords package (its noun, adjective and verb lists); star ships
// small built-in lists instead, and for common-words extraction at long
// lengths, which needs more distinct words than they hold, adds
// pronounceable made-up words built from syllables. Everything is
// deterministic: the same seed gives the same words.

const adjectiveText = `able acid angry aware bad basic big bitter black blue bold brave brief bright
broad brown busy calm cheap clean clear close cold cool crazy cruel curly cute damp dark dear deep
dirty dry dull eager early easy empty equal even evil exact faint fair fake false famous fancy fast
fat fine firm flat fond free fresh full funny fuzzy gentle giant glad golden good grand gray great
green happy hard harsh heavy high hollow honest hot huge humble hungry icy ideal idle jolly juicy
keen kind large late lazy leafy light little lively local lone long loose loud lovely low loyal lucky
mad magic major merry mild minor modern moist narrow near neat new nice noble noisy odd old open orange
pale perfect pink plain polite poor proud pure purple quick quiet rapid rare raw ready real red rich
right rigid ripe rough round royal rude rusty sad safe salty sandy sharp shiny short shy silent silly
simple sleepy slim slow small smart smooth soft solid sour spare spicy stale steep sticky stiff still
strange strict strong sudden sunny super sweet swift tall tame tender thick thin tidy tiny tired tough
true ugly upset urban vague vast vivid warm weak wet white wide wild windy wise witty wooden young`

const nounText = `acorn actor airport anchor angle apple arch arrow attic bag bakery ball banana band bank barn
basket beach bean bear bed bell bench berry bike bird blanket boat bone book boot bottle box branch
bread bridge brush bucket bus butter button cabin cake camel camera candle canyon car carpet castle
cat cave chair cheese cherry chest chicken circle city clock cloud coat coffee coin comet cookie
corner cottage cow crown cup curtain desk diamond dinner dog door dragon drum duck eagle egg engine
fabric farm feather fence field finger fish flag flower forest fork fountain fox frog garden gate
ghost gift glass glove goat grape guitar hammer harbor hat hill horse house island jacket jar jewel
kettle key kite ladder lake lamp leaf lemon letter library lion lizard machine map market meadow
mirror monkey moon mountain mouse museum needle nest ocean office onion orchard owl oyster palace
panda paper parrot pencil pepper piano pillow planet plate pocket pond potato puzzle queen rabbit
radio rainbow river road robot rock roof rope rose saddle sail salad school seed shadow sheep shell
ship shoe shovel silver sled snake sock spoon star station stone storm street sugar summer table
teapot tent ticket tiger tomato tower train tree truck tulip tunnel turtle umbrella valley vase
village violin wagon wall wallet whale wheel window wolf yard zebra`

const verbText = `accept add admire allow answer arrive ask bake balance bathe battle beg behave belong bless
blink boil borrow bounce bow breathe build bump burn buzz calculate call carry carve catch chase cheer
chew chop clap clean climb collect comb count cover crawl cross cry cycle dance decide deliver dig dive
drag draw dream drift drink drop dust earn enjoy explain fetch fill find fix float fly fold follow gather
glow grab greet grin guard guess hammer hang help hop hug hunt hurry invent jog juggle jump kick kneel
knit knock laugh learn lift listen march melt mend mix nod obey open paint pedal pick plant play point
pour pray pull push race rain reach read relax remember repair rescue rest ride rinse roll rush sail
scream search sew shake shine shiver sing skip sleep slide smile sneeze sniff snore spill spin splash
sprint squeeze stack stare stir stretch swim swing talk taste teach throw tickle trace travel trust
tumble twist type visit wait walk wander wash watch wave whisper whistle wink wish work wrap yawn yell`

var (
	adjectives = strings.Fields(adjectiveText)
	nouns      = strings.Fields(nounText)
	verbs      = strings.Fields(verbText)
)

// keyWord is a NIAH key made of words, as RULER's "adjective-noun".
func keyWord(r *rand.Rand) string {
	return adjectives[r.IntN(len(adjectives))] + "-" + nouns[r.IntN(len(nouns))]
}

// syllables build made-up words once the real ones run out.
var (
	onsets = strings.Fields("b d f g h k l m n p r s t v z br dr fl gr pl st tr")
	nuclei = strings.Fields("a e i o u")
)

// wordPool returns n distinct lowercase words: the built-in nouns,
// adjectives and verbs in a seeded order, then made-up words of two and
// three syllables (also distinct from the real ones). Deterministic in
// (seed, n).
func wordPool(r *rand.Rand, n int) []string {
	seen := map[string]bool{}
	var out []string
	add := func(w string) {
		if !seen[w] && len(out) < n {
			seen[w] = true
			out = append(out, w)
		}
	}
	real := append(append(append([]string(nil), nouns...), adjectives...), verbs...)
	r.Shuffle(len(real), func(i, j int) { real[i], real[j] = real[j], real[i] })
	for _, w := range real {
		add(w)
	}
	for syl := 2; len(out) < n; syl++ {
		tries := 0
		for len(out) < n && tries < 50*n {
			var b strings.Builder
			for k := 0; k < syl; k++ {
				b.WriteString(onsets[r.IntN(len(onsets))])
				b.WriteString(nuclei[r.IntN(len(nuclei))])
			}
			add(b.String())
			tries++
		}
	}
	return out
}
