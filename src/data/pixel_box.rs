//! The box type every room shares: an axis-aligned rectangle in pixels.
use serde::{Deserialize, Serialize};

/// An axis-aligned rectangle in pixels of an image (top-left corner, width,
/// height): where an artefact was stamped, a suspect region, a picture's
/// outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BoxFields")]
pub struct PixelBox {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// audit.json files written before patches recorded squares as `side`.
#[derive(Deserialize)]
struct BoxFields {
    x: i64,
    y: i64,
    w: Option<i64>,
    h: Option<i64>,
    side: Option<i64>,
}

impl TryFrom<BoxFields> for PixelBox {
    type Error = String;
    fn try_from(f: BoxFields) -> Result<Self, String> {
        match (f.w.or(f.side), f.h.or(f.side)) {
            (Some(w), Some(h)) => Ok(PixelBox {
                x: f.x,
                y: f.y,
                w,
                h,
            }),
            _ => Err("a box needs w and h (or side)".into()),
        }
    }
}

impl PixelBox {
    pub fn square(x: i64, y: i64, side: i64) -> Self {
        PixelBox {
            x,
            y,
            w: side,
            h: side,
        }
    }

    /// The box from pixel (x0, y0) to pixel (x1, y1), both inside.
    pub fn spanning(x0: usize, y0: usize, x1: usize, y1: usize) -> Self {
        PixelBox {
            x: x0 as i64,
            y: y0 as i64,
            w: (x1 - x0 + 1) as i64,
            h: (y1 - y0 + 1) as i64,
        }
    }

    /// The box moved by (dx, dy).
    pub fn shifted(&self, dx: i64, dy: i64) -> Self {
        PixelBox {
            x: self.x + dx,
            y: self.y + dy,
            ..*self
        }
    }

    /// True when pixel (px, py) lies inside the box.
    pub fn contains(&self, px: i64, py: i64) -> bool {
        px >= self.x && px < self.x + self.w && py >= self.y && py < self.y + self.h
    }

    pub fn area(&self) -> i64 {
        self.w * self.h
    }

    /// The box grown by `margin` pixels on every side.
    pub fn dilated(&self, margin: i64) -> PixelBox {
        PixelBox {
            x: self.x - margin,
            y: self.y - margin,
            w: self.w + 2 * margin,
            h: self.h + 2 * margin,
        }
    }
}
