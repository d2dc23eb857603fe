//! Segmented palette colour lookup tables (PS3.3 C.7.9.2), as ultrasound scanners write
//! them: discrete (opcode 0), linear (1) and indirect (2) segments expanded into the table
//! the palette's descriptor describes, value for value as pydicom's `_expand_segmented_lut`
//! expands them. Hostile data cannot make the expansion allocate past the descriptor's
//! entries, loop, or panic: each fault is refused with its place in the data.

use std::fmt;

/// Expands Segmented Red/Green/Blue Palette Color Lookup Table Data to the table's
/// `entries` values (the descriptor's first value, 0 meaning 65536). `raw` is the
/// element's bytes in the file's order and `big_endian` that order; `bits` is the
/// descriptor's bits per entry, which also says how pydicom reads the segments: word by
/// word for 16, byte by byte for 8 (other depths are refused, as pydicom refuses them).
/// What follows the last entry is not read; fewer entries than `entries` is an error.
pub(crate) fn expand_segmented(raw: &[u8], big_endian: bool, bits: u32, entries: usize) -> Result<Vec<f64>, String> {
    let (data, unit) = match bits {
        8 => (raw.iter().map(|&b| u16::from(b)).collect::<Vec<_>>(), Unit::Byte),
        16 if raw.len().is_multiple_of(2) => {
            (raw.chunks_exact(2).map(|b| word([b[0], b[1]], big_endian)).collect(), Unit::Word)
        }
        16 => return Err(format!("its {} bytes are not a whole number of 16-bit words", raw.len())),
        _ => {
            return Err(format!(
                "the descriptor gives {bits} bits per entry, but segmented tables have 8 or 16; correct the \
                 descriptor's third value"
            ));
        }
    };
    let (table, budget) = (Vec::with_capacity(entries), data.len() + entries);
    let mut expansion = Expansion { data: &data, unit, big_endian, entries, table, budget, cut: None };
    expansion.segments(0, None)?;
    let found = expansion.table.len();
    if found < entries {
        let cut = expansion.cut.map(|at| format!(": {}", expansion.cut_off("discrete", at))).unwrap_or_default();
        return Err(format!("it expands to {found} entries, fewer than the {entries} its descriptor says{cut}"));
    }
    Ok(expansion.table.into_iter().map(f64::from).collect())
}

/// What the segments are read in: 16-bit words, or bytes for 8-bit tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Word,
    Byte,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Word => "word",
            Unit::Byte => "byte",
        })
    }
}

/// The segments an indirect segment copies: `count` of them (0: up to the end of the
/// data, as pydicom reads it) for the indirect segment at `by`.
#[derive(Debug, Clone, Copy)]
struct Copying {
    by: usize,
    count: usize,
}

/// One table being expanded from its segments.
struct Expansion<'a> {
    /// The segmented data, one value per unit.
    data: &'a [u16],
    unit: Unit,
    big_endian: bool,
    /// The descriptor's number of entries: the expansion stops there.
    entries: usize,
    table: Vec<u16>,
    /// Segments still to be read, copies included: indirect segments that copy segments
    /// adding nothing could otherwise make the work grow with the square of the data.
    budget: usize,
    /// Where the first discrete segment cut off by the end of the data starts.
    cut: Option<usize>,
}

impl Expansion<'_> {
    /// Reads the segments from unit `at` to the end of the data, or those an indirect
    /// segment copies, until the table is full. A single unit left at the end is padding
    /// (pydicom's "trailing null").
    fn segments(&mut self, mut at: usize, copying: Option<Copying>) -> Result<(), String> {
        let mut read = 0;
        while at + 1 < self.data.len() && self.table.len() < self.entries {
            self.budget = self.budget.checked_sub(1).ok_or_else(|| {
                format!(
                    "its indirect segments copy more segments than a table of {} entries can use (the last at {} \
                     {at}): most of them add no entry",
                    self.entries, self.unit
                )
            })?;
            let (opcode, length) = (self.data[at], usize::from(self.data[at + 1]));
            at = match opcode {
                0 => self.discrete(at, length),
                1 => self.linear(at, length)?,
                2 => self.indirect(at, length, copying)?,
                _ => {
                    return Err(format!(
                        "the segment at {} {at} has type {opcode}; only 0 (discrete), 1 (linear) and 2 (indirect) \
                         are defined",
                        self.unit
                    ));
                }
            };
            read += 1;
            if copying.is_some_and(|c| c.count == read) {
                break;
            }
        }
        Ok(())
    }

    /// Appends values, up to the table's last entry.
    fn push(&mut self, values: impl Iterator<Item = u16>) {
        let room = self.entries - self.table.len();
        self.table.extend(values.take(room));
    }

    /// The fault of a segment at `at` that the data ends inside.
    fn cut_off(&self, kind: &str, at: usize) -> String {
        format!(
            "the {kind} segment at {} {at} runs past the end of the data ({} {}s)",
            self.unit,
            self.data.len(),
            self.unit
        )
    }

    /// A discrete segment: `length` values as they are; of one that runs past the end of
    /// the data, the values there (pydicom's slice), noted for the error should the table
    /// come out short. Returns where the next segment starts.
    fn discrete(&mut self, at: usize, length: usize) -> usize {
        let (data, end) = (self.data, at + 2 + length);
        if end > data.len() {
            self.cut = self.cut.or(Some(at));
        }
        self.push(data[at + 2..end.min(data.len())].iter().copied());
        end
    }

    /// A linear segment: `length` values on the line from the table's last value to the
    /// segment's end value.
    fn linear(&mut self, at: usize, length: usize) -> Result<usize, String> {
        let unit = self.unit;
        let &y0 = self.table.last().ok_or_else(|| {
            format!("the linear segment at {unit} {at} comes first, but a linear segment continues the one before it")
        })?;
        let &y1 = self.data.get(at + 2).ok_or_else(|| self.cut_off("linear", at))?;
        if length == 0 && y0 != y1 {
            return Err(format!("the linear segment at {unit} {at} goes from {y0} to {y1} in 0 entries"));
        }
        self.push(linear_values(y0, y1, length));
        Ok(at + 3)
    }

    /// An indirect segment: copies `count` segments from the offset it holds (32 bits, low
    /// word first, counted in units from the start of the data, as pydicom and GDCM read
    /// it), continuing the table. A copied segment may not be indirect itself.
    fn indirect(&mut self, at: usize, count: usize, copying: Option<Copying>) -> Result<usize, String> {
        let unit = self.unit;
        if let Some(outer) = copying {
            return Err(if outer.by == at {
                format!("the indirect segment at {unit} {at} copies itself")
            } else {
                format!(
                    "the indirect segment at {unit} {} copies another indirect segment (at {unit} {at}); copied \
                     segments must be discrete or linear",
                    outer.by
                )
            });
        }
        if self.table.is_empty() {
            return Err(format!("the indirect segment at {unit} {at} comes first, with nothing before it to copy"));
        }
        let width = match unit {
            Unit::Word => 2,
            Unit::Byte => 4,
        };
        let field = self.data.get(at + 2..at + 2 + width).ok_or_else(|| self.cut_off("indirect", at))?;
        let (low, high) = match unit {
            Unit::Word => (field[0], field[1]),
            // each 16-bit half is two bytes in the file's order
            Unit::Byte => {
                let half = |a: u16, b: u16| word([a as u8, b as u8], self.big_endian);
                (half(field[0], field[1]), half(field[2], field[3]))
            }
        };
        let offset = ((u32::from(high) << 16) | u32::from(low)) as usize;
        if offset >= self.data.len() {
            return Err(format!(
                "the indirect segment at {unit} {at} points to {unit} {offset}, past the end of the data ({} {unit}s)",
                self.data.len()
            ));
        }
        self.segments(offset, Some(Copying { by: at, count }))?;
        Ok(at + 2 + width)
    }
}

/// A 16-bit word from two bytes in the file's order.
fn word(pair: [u8; 2], big_endian: bool) -> u16 {
    if big_endian { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) }
}

/// The `length` values of a linear segment from `y0` (the value before it, not repeated)
/// to `y1`, as pydicom computes them: `np.around(np.linspace(y0 + step, y1, length))` with
/// `step = (y1 - y0) / length`. numpy's operations in numpy's order (`i * ((stop - start)
/// / (length - 1)) + start`, the last value `stop` itself) and halves rounded to even give
/// the same values to the bit; the shorter `y0 + (i + 1) * step` rounds some the other way
/// (0 to 119 in 10 entries: 59 at the fifth, not 60).
fn linear_values(y0: u16, y1: u16, length: usize) -> impl Iterator<Item = u16> {
    let (y0, y1) = (f64::from(y0), f64::from(y1));
    let start = y0 + (y1 - y0) / length as f64;
    let step = if length > 1 { (y1 - start) / (length - 1) as f64 } else { 0.0 };
    (0..length).map(move |i| {
        let y = if length > 1 && i == length - 1 { y1 } else { i as f64 * step + start };
        // between y0 and y1, both in u16's range
        y.round_ties_even() as u16
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16-bit segmented data as a little-endian file stores it.
    fn le(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn expand16(words: &[u16], entries: usize) -> Result<Vec<f64>, String> {
        expand_segmented(&le(words), false, 16, entries)
    }

    fn values(table: &[u16]) -> Vec<f64> {
        table.iter().map(|&v| f64::from(v)).collect()
    }

    #[test]
    fn discrete_segments_are_copied_and_a_trailing_null_is_padding() {
        // pydicom's test_discrete: (0, 1, 0) is one entry 0; a final (0, 0) adds nothing
        assert_eq!(expand16(&[0, 1, 0], 1).unwrap(), values(&[0]));
        assert_eq!(expand16(&[0, 2, 0, 112], 2).unwrap(), values(&[0, 112]));
        assert_eq!(expand16(&[0, 2, 0, 112, 0, 0], 2).unwrap(), values(&[0, 112]));
        // a lone unit after the last segment is padding
        assert_eq!(expand16(&[0, 2, 0, 112, 0], 2).unwrap(), values(&[0, 112]));
    }

    #[test]
    fn linear_segments_continue_from_the_previous_value() {
        // pydicom's test_linear: rising, flat and falling lines after a discrete segment
        let rising = [0, 28672, 32768, 36864, 40960, 45056, 49152];
        assert_eq!(expand16(&[0, 2, 0, 28672, 1, 5, 49152], 7).unwrap(), values(&rising));
        let flat = [0, 28672, 28672, 28672, 28672, 28672, 28672];
        assert_eq!(expand16(&[0, 2, 0, 28672, 1, 5, 28672], 7).unwrap(), values(&flat));
        let falling = [0, 49152, 45056, 40960, 36864, 32768, 28672];
        assert_eq!(expand16(&[0, 2, 0, 49152, 1, 5, 28672], 7).unwrap(), values(&falling));
        // one entry is the end value; no entries at the same value adds nothing
        assert_eq!(expand16(&[0, 1, 3, 1, 1, 9], 2).unwrap(), values(&[3, 9]));
        assert_eq!(expand16(&[0, 1, 3, 1, 0, 3, 0, 1, 4], 2).unwrap(), values(&[3, 4]));
    }

    #[test]
    fn linear_segments_round_as_numpy_does() {
        // by hand: 0 to 1 in 2 entries is linspace(0.5, 1) = [0.5, 1], and 0.5 rounds to 0 (halves to even);
        // 0 to 5 in 2 is [2.5, 5]: 2
        assert_eq!(expand16(&[0, 1, 0, 1, 2, 1], 3).unwrap(), values(&[0, 0, 1]));
        assert_eq!(expand16(&[0, 1, 0, 1, 2, 5], 3).unwrap(), values(&[0, 2, 5]));
        // pydicom gives 59 at the fifth entry of 0 to 119 in 10 (linspace's 59.4999...), where 0 + 5 * 11.9 = 59.5
        // would round to 60
        let table = expand16(&[0, 1, 0, 1, 10, 119], 11).unwrap();
        assert_eq!(table, values(&[0, 12, 24, 36, 48, 59, 71, 83, 95, 107, 119]));
        // pydicom: 1732 to 38851 in 70 entries holds 19231, 19761, 20291, 20822 at 33..36 (the shorter formula: 20292)
        let table = expand16(&[0, 1, 1732, 1, 70, 38851], 71).unwrap();
        assert_eq!(table[33..37], values(&[19231, 19761, 20291, 20822]));
        assert_eq!(table[69..], values(&[38321, 38851]));
    }

    #[test]
    fn eight_bit_palettes_are_read_byte_by_byte() {
        // pydicom's SUMMER palette (pydicom/data/palettes/summer.dcm) and its expected values
        let green = expand_segmented(&[0, 1, 255, 1, 255, 128], false, 8, 256).unwrap();
        assert_eq!(green[..5], values(&[255, 255, 254, 254, 253]));
        assert_eq!(green[251..], values(&[130, 129, 129, 128, 128]));
        let blue = expand_segmented(&[0, 1, 0, 1, 127, 0, 1, 128, 254, 0], false, 8, 256).unwrap();
        assert_eq!(blue[..128], vec![0.0; 128]);
        assert_eq!(blue[251..], values(&[246, 248, 250, 252, 254]));
        // SPRING's green: 0 to 255 in 255 steps is 0..=255
        let spring = expand_segmented(&[0, 1, 0, 1, 255, 255], false, 8, 256).unwrap();
        assert_eq!(spring, (0..=255u8).map(f64::from).collect::<Vec<_>>());
    }

    #[test]
    fn indirect_segments_copy_earlier_segments() {
        // pydicom's test_indirect_16: copying a discrete and a linear segment (offset 0), then a linear one
        // (offset 4) that starts from the table's last value
        let ramp = [0, 112, 128, 144, 160, 176, 192];
        let twice: Vec<u16> = ramp.iter().chain(&ramp).copied().collect();
        assert_eq!(expand16(&[0, 2, 0, 112, 1, 5, 192, 2, 2, 0, 0], 14).unwrap(), values(&twice));
        let flat = [0, 112, 128, 144, 160, 176, 192, 192, 192, 192, 192, 192];
        assert_eq!(expand16(&[0, 2, 0, 112, 1, 5, 192, 2, 1, 4, 0], 12).unwrap(), values(&flat));
        // an indirect segment may point forward; count 0 copies up to the end of the data, as pydicom does
        assert_eq!(expand16(&[0, 1, 7, 2, 0, 7, 0, 0, 2, 8, 9], 5).unwrap(), values(&[7, 8, 9, 8, 9]));
        // the same words in a big-endian file
        let be: Vec<u8> = [0u16, 2, 0, 112, 1, 5, 192, 2, 1, 4, 0].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(expand_segmented(&be, true, 16, 12).unwrap(), values(&flat));
    }

    #[test]
    fn eight_bit_indirect_offsets_follow_the_files_byte_order() {
        // pydicom's test_indirect_08: the offset's 4 bytes are two 16-bit halves, low half first, each in
        // the file's byte order
        let flat = values(&[0, 112, 128, 144, 160, 176, 192, 192, 192, 192, 192, 192]);
        assert_eq!(expand_segmented(&[0, 2, 0, 112, 1, 5, 192, 2, 1, 4, 0, 0, 0], false, 8, 12).unwrap(), flat);
        assert_eq!(expand_segmented(&[0, 2, 0, 112, 1, 5, 192, 2, 1, 0, 4, 0, 0], true, 8, 12).unwrap(), flat);
        // an offset past 16 bits: 0x00010203 = 66051, where 22017 one-entry segments end
        for (big_endian, offset) in [(false, [3u8, 2, 1, 0]), (true, [2, 3, 0, 1])] {
            let mut data = [0u8, 1, 0].repeat(22017);
            data.extend([0u8, 2, 1, 2, 2, 1]);
            data.extend(offset);
            let table = expand_segmented(&data, big_endian, 8, 22021).unwrap();
            assert_eq!(table[..22017], vec![0.0; 22017]);
            assert_eq!(table[22017..], values(&[1, 2, 1, 2]));
        }
    }

    #[test]
    fn the_table_stops_at_the_descriptors_entries() {
        // a linear segment of 65535 entries, and another after it, fill a table of 10 and no more
        let table = expand16(&[0, 1, 0, 1, 65535, 65535, 1, 65535, 0], 10).unwrap();
        assert_eq!(table.len(), 10);
        assert_eq!(table[1], 1.0);
        // a segment of an unknown type after the last entry is not read
        assert_eq!(expand16(&[0, 2, 5, 6, 9, 9], 2).unwrap(), values(&[5, 6]));
        // a discrete segment longer than the data gives the values there, as pydicom's slice does
        assert_eq!(expand16(&[0, 5, 1, 2, 3], 3).unwrap(), values(&[1, 2, 3]));
    }

    #[test]
    fn malformed_tables_are_refused_with_the_fault() {
        let refused = |words: &[u16], entries: usize, fault: &str| {
            let message = expand16(words, entries).unwrap_err();
            assert!(message.contains(fault), "{words:?}: {message}");
        };
        refused(&[1, 5, 49152], 5, "the linear segment at word 0 comes first");
        refused(&[2, 5, 2, 0], 5, "the indirect segment at word 0 comes first");
        refused(&[3, 5, 49152], 5, "has type 3");
        refused(&[0, 2, 1, 2], 4, "expands to 2 entries, fewer than the 4");
        refused(&[0, 5, 1, 2], 5, "fewer than the 5 its descriptor says: the discrete segment at word 0 runs past");
        refused(&[0, 1, 5, 1, 3], 4, "the linear segment at word 3 runs past the end of the data (5 words)");
        refused(&[0, 1, 5, 2, 1, 0], 4, "the indirect segment at word 3 runs past");
        refused(&[0, 1, 5, 1, 0, 9], 4, "goes from 5 to 9 in 0 entries");
        refused(&[0, 1, 5, 2, 1, 40, 0], 4, "points to word 40, past the end of the data (7 words)");
        refused(&[0, 1, 5, 2, 1, 0, 1], 4, "points to word 65536");
        refused(&[0, 1, 5, 2, 1, 3, 0], 4, "the indirect segment at word 3 copies itself");
        refused(&[0, 1, 5, 2, 1, 7, 0, 2, 1, 0, 0], 4, "copies another indirect segment (at word 7)");
        assert!(expand_segmented(&[0, 1, 5], false, 16, 1).unwrap_err().contains("3 bytes"));
        assert!(expand_segmented(&[0, 1, 5, 0], false, 12, 1).unwrap_err().contains("12 bits per entry"));
    }

    #[test]
    fn copies_of_empty_segments_are_bounded() {
        // 100 empty discrete segments, copied by each of 100 indirect segments: 10,000 segments adding nothing
        let mut words: Vec<u16> = vec![0, 1, 7];
        words.extend([0u16, 0].repeat(100));
        words.extend([2u16, 100, 3, 0].repeat(100));
        let message = expand16(&words, 2).unwrap_err();
        assert!(message.contains("copy more segments than a table of 2 entries can use"), "{message}");
    }

    #[test]
    fn arbitrary_data_never_panics_nor_overfills() {
        // a fixed pseudo-random sequence (64-bit LCG) of short tables, with opcodes 0..=3 and small lengths
        // weighted in so that every branch is reached
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u16
        };
        for _ in 0..20_000 {
            let len = usize::from(next() % 24);
            let words: Vec<u16> = (0..len).map(|_| if next() % 2 == 0 { next() % 4 } else { next() % 12 }).collect();
            let entries = usize::from(next() % 16) + 1;
            for (bits, big_endian) in [(16, false), (16, true), (8, false), (8, true)] {
                if let Ok(table) = expand_segmented(&le(&words), big_endian, bits, entries) {
                    assert_eq!(table.len(), entries, "{words:?}");
                }
            }
        }
    }
}
