//! The unit table of `docs/language.md#units`: suffixes, dimensions and conversion to
//! each dimension's base unit. Quantities keep the unit they were written in
//! (so a bare number can adopt it) and convert only to compare or add.

use serde::Serialize;
use std::fmt;

/// A physical dimension, or a currency (each ISO-4217 code is its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Ratio,
    Length,
    Duration,
    Temperature,
    Speed,
    Mass,
    Pressure,
    Voltage,
    Current,
    Power,
    Energy,
    Frequency,
    Data,
    Currency([u8; 3]),
}

impl Dimension {
    pub fn name(&self) -> String {
        match self {
            Dimension::Ratio => "ratio".into(),
            Dimension::Length => "length".into(),
            Dimension::Duration => "duration".into(),
            Dimension::Temperature => "temperature".into(),
            Dimension::Speed => "speed".into(),
            Dimension::Mass => "mass".into(),
            Dimension::Pressure => "pressure".into(),
            Dimension::Voltage => "voltage".into(),
            Dimension::Current => "current".into(),
            Dimension::Power => "power".into(),
            Dimension::Energy => "energy".into(),
            Dimension::Frequency => "frequency".into(),
            Dimension::Data => "data size".into(),
            Dimension::Currency(c) => {
                format!("currency {}", std::str::from_utf8(c).unwrap_or("???"))
            }
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One unit: its suffix, dimension, and the affine map to the base unit
/// (`base = value * factor + offset`; the offset is non-zero only for C and F).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub suffix: &'static str,
    pub dim: Dimension,
    pub factor: f64,
    pub offset: f64,
}

impl Unit {
    pub fn to_base(&self, v: f64) -> f64 {
        v * self.factor + self.offset
    }
    pub fn from_base(&self, b: f64) -> f64 {
        (b - self.offset) / self.factor
    }
}

const fn u(suffix: &'static str, dim: Dimension, factor: f64) -> Unit {
    Unit {
        suffix,
        dim,
        factor,
        offset: 0.0,
    }
}

use Dimension::*;

static UNITS: &[Unit] = &[
    u("%", Ratio, 0.01),
    u("pct", Ratio, 0.01),
    u("ppm", Ratio, 1e-6),
    u("mm", Length, 1e-3),
    u("cm", Length, 1e-2),
    u("m", Length, 1.0),
    u("km", Length, 1e3),
    u("in", Length, 0.0254),
    u("ft", Length, 0.3048),
    u("mi", Length, 1609.344),
    u("ns", Duration, 1e-9),
    u("us", Duration, 1e-6),
    u("ms", Duration, 1e-3),
    u("s", Duration, 1.0),
    u("min", Duration, 60.0),
    u("h", Duration, 3600.0),
    u("d", Duration, 86400.0),
    u("w", Duration, 604800.0),
    Unit {
        suffix: "C",
        dim: Temperature,
        factor: 1.0,
        offset: 273.15,
    },
    Unit {
        suffix: "F",
        dim: Temperature,
        factor: 5.0 / 9.0,
        offset: 273.15 - 32.0 * 5.0 / 9.0,
    },
    u("K", Temperature, 1.0),
    u("mps", Speed, 1.0),
    u("kmh", Speed, 1.0 / 3.6),
    u("kph", Speed, 1.0 / 3.6),
    u("mph", Speed, 0.44704),
    u("kn", Speed, 0.514444),
    u("mg", Mass, 1e-6),
    u("g", Mass, 1e-3),
    u("kg", Mass, 1.0),
    u("t", Mass, 1e3),
    u("lb", Mass, 0.45359237),
    u("Pa", Pressure, 1.0),
    u("kPa", Pressure, 1e3),
    u("MPa", Pressure, 1e6),
    u("bar", Pressure, 1e5),
    u("psi", Pressure, 6894.757),
    u("mV", Voltage, 1e-3),
    u("V", Voltage, 1.0),
    u("kV", Voltage, 1e3),
    u("mA", Current, 1e-3),
    u("A", Current, 1.0),
    u("W", Power, 1.0),
    u("kW", Power, 1e3),
    u("MW", Power, 1e6),
    u("J", Energy, 1.0),
    u("Wh", Energy, 3600.0),
    u("kWh", Energy, 3.6e6),
    u("MWh", Energy, 3.6e9),
    u("Hz", Frequency, 1.0),
    u("kHz", Frequency, 1e3),
    u("MHz", Frequency, 1e6),
    u("GHz", Frequency, 1e9),
    u("B", Data, 1.0),
    u("KB", Data, 1e3),
    u("MB", Data, 1e6),
    u("GB", Data, 1e9),
    u("TB", Data, 1e12),
    u("KiB", Data, 1024.0),
    u("MiB", Data, 1048576.0),
    u("GiB", Data, 1073741824.0),
    u("TiB", Data, 1099511627776.0),
];

/// Active ISO-4217 currency codes.
static CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL";

/// A reference to a unit: an index into the static table, or a currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitId {
    Table(u16),
    Currency([u8; 3]),
}

impl UnitId {
    pub fn unit(self) -> Unit {
        match self {
            UnitId::Table(i) => UNITS[i as usize],
            UnitId::Currency(c) => Unit {
                suffix: "",
                dim: Dimension::Currency(c),
                factor: 1.0,
                offset: 0.0,
            },
        }
    }
    pub fn dim(self) -> Dimension {
        match self {
            UnitId::Table(i) => UNITS[i as usize].dim,
            UnitId::Currency(c) => Dimension::Currency(c),
        }
    }
    pub fn suffix(self) -> &'static str {
        match self {
            UnitId::Table(i) => UNITS[i as usize].suffix,
            UnitId::Currency(c) => currency_str(c),
        }
    }
}

fn currency_str(c: [u8; 3]) -> &'static str {
    // Every currency code is stored in CURRENCIES; return the static slice.
    let mut i = 0;
    let bytes = CURRENCIES.as_bytes();
    while i + 3 <= bytes.len() {
        if bytes[i..i + 3] == c {
            return &CURRENCIES[i..i + 3];
        }
        i += 4;
    }
    "???"
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

impl Serialize for UnitId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.suffix())
    }
}

/// Looks a suffix up (case-sensitive, as written).
pub fn lookup(suffix: &str) -> Option<UnitId> {
    if let Some(i) = UNITS.iter().position(|u| u.suffix == suffix) {
        return Some(UnitId::Table(i as u16));
    }
    if suffix.len() == 3 && suffix.bytes().all(|b| b.is_ascii_uppercase()) {
        let b = suffix.as_bytes();
        let code = [b[0], b[1], b[2]];
        if CURRENCIES.split(' ').any(|c| c == suffix) {
            return Some(UnitId::Currency(code));
        }
    }
    None
}

/// All known suffixes (for "did you mean" suggestions).
pub fn all_suffixes() -> impl Iterator<Item = &'static str> {
    UNITS.iter().map(|u| u.suffix)
}

/// Two quantities are equal when their base values differ by at most a
/// relative 1e-9 (so `250cm == 2.5m`).
pub fn approx_eq(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= 1e-9 * scale
}

/// Parses `"250cm"`, `"1.5s"`, `"25%"`: a number immediately followed by a
/// known suffix. Anything else is not a quantity.
pub fn parse_quantity_str(s: &str) -> Option<(f64, UnitId)> {
    // Most strings are words: reject them on the first byte.
    match s.as_bytes().first()? {
        b'0'..=b'9' | b'-' | b'+' | b'.' | b' ' | b'\t' => {}
        _ => return None,
    }
    let s = s.trim();
    let split = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || c == '.'
                || (i == 0 && (c == '-' || c == '+'))
                || ((c == 'e' || c == 'E')
                    && s[i + 1..]
                        .chars()
                        .next()
                        .is_some_and(|n| n.is_ascii_digit() || n == '-' || n == '+')))
        })
        .map(|(i, _)| i)?;
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || !num.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    let unit = lookup(suffix)?;
    Some((v, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_sensitive() {
        assert_eq!(lookup("m").map(|u| u.dim()), Some(Length));
        assert_eq!(lookup("min").map(|u| u.dim()), Some(Duration));
        assert_eq!(lookup("MB").map(|u| u.dim()), Some(Data));
        assert!(lookup("mb").is_none());
        assert_eq!(lookup("USD").map(|u| u.dim()), Some(Currency(*b"USD")));
        assert!(lookup("ABC").is_none());
    }

    #[test]
    fn temperatures_convert_with_offset() {
        let c = lookup("C").map(|u| u.unit()).expect("C");
        let f = lookup("F").map(|u| u.unit()).expect("F");
        assert!(approx_eq(c.to_base(100.0), f.to_base(212.0)));
        assert!(approx_eq(c.to_base(0.0), 273.15));
    }

    #[test]
    fn quantity_strings() {
        let (v, u) = parse_quantity_str("250cm").expect("quantity");
        assert_eq!(v, 250.0);
        assert_eq!(u.suffix(), "cm");
        assert!(parse_quantity_str("250").is_none());
        assert!(parse_quantity_str("cm").is_none());
        assert!(parse_quantity_str("12 apples").is_none());
        assert_eq!(parse_quantity_str("1.5e3ms").map(|q| q.0), Some(1500.0));
        assert_eq!(currency_str(*b"USD"), "USD");
    }
}
