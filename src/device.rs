//! Device selection (`--device auto|cpu|cuda[:N]`) and the libtorch facts that
//! `nave-lab doctor` reports.
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use tch::{Cuda, Device};

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA device 0 when CUDA is available, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(index) => index.parse::<usize>().map(Self::Cuda).map_err(|_| {
                    format!("'{s}' is not a device: the CUDA index must be a number, as in cuda:0")
                }),
                None => Err(format!(
                    "'{s}' is not a device: use auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device {requested} asks for CUDA, but CUDA is not available to this build (run `nave-lab doctor` to see why)")]
    CudaUnavailable { requested: DeviceRequest },
    #[error("--device {requested} asks for CUDA device {index}, but only {count} CUDA device(s) are visible")]
    NoSuchCudaDevice {
        requested: DeviceRequest,
        index: usize,
        count: usize,
    },
}

impl DeviceRequest {
    /// The libtorch device this request resolves to on this machine.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(if Cuda::is_available() {
                Device::Cuda(0)
            } else {
                Device::Cpu
            }),
            Self::Cuda(index) => {
                if !Cuda::is_available() {
                    return Err(DeviceError::CudaUnavailable { requested: self });
                }
                let count = Cuda::device_count() as usize;
                if index >= count {
                    return Err(DeviceError::NoSuchCudaDevice {
                        requested: self,
                        index,
                        count,
                    });
                }
                Ok(Device::Cuda(index))
            }
        }
    }
}

/// A short name for a device, as the CLI spells it.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Everything a user debugging a set-up needs to know (`nave-lab doctor`).
#[derive(Debug, Clone, Serialize)]
pub struct Doctor {
    pub nave_lab_version: String,
    pub libtorch_version: String,
    /// The folder the libtorch in use was loaded from (read from the process's
    /// memory map, so it is the library actually loaded, not the one expected).
    pub libtorch_path: Option<String>,
    /// The folder the binary was linked against (its rpath).
    pub libtorch_build_path: String,
    /// Whether the build linked libtorch_cuda (a CPU-only set-up does not).
    pub linked_cuda: bool,
    pub cpu_threads: i32,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<String>,
    pub cuda_runtime_version: Option<String>,
    pub cuda_driver_version: Option<String>,
    pub gpus: Vec<GpuInfo>,
    pub default_device: String,
    /// Why CUDA is not available, when it is not and the reason is known.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub index: usize,
    pub name: String,
    pub memory_bytes: u64,
    pub compute_capability: String,
}

pub fn doctor(requested: DeviceRequest) -> Doctor {
    let cuda_available = Cuda::is_available();
    let cuda_device_count = if cuda_available {
        Cuda::device_count()
    } else {
        0
    };
    let cudnn_available = cuda_available && Cuda::cudnn_is_available();
    let linked_cuda = env!("NAVE_LAB_LINKED_CUDA") == "1";
    // SAFETY: plain getters on libtorch's global context; they take no pointers.
    let (cudnn_raw, cudart_raw) = if cuda_available {
        unsafe {
            (
                torch_sys::at_context_version_cudnn(),
                torch_sys::at_context_version_cudart(),
            )
        }
    } else {
        (0, 0)
    };
    let driver = cuda_driver::probe();
    let mut notes = Vec::new();
    if !linked_cuda {
        notes.push(
            "this build is CPU-only (libtorch_cuda was not linked); `make setup GPU=1 && make build` builds one for CUDA (`make gpu-binary`: one to copy to a CUDA machine)"
                .to_string(),
        );
    } else if !cuda_available {
        match &driver {
            Err(e) => notes.push(format!("libtorch_cuda is linked, but the NVIDIA driver could not be used: {e}")),
            Ok(d) if d.devices.is_empty() => notes.push("the NVIDIA driver reports no GPU".to_string()),
            Ok(_) => notes.push("the driver sees GPUs but libtorch reports CUDA unavailable; check that the driver is new enough for CUDA 13".to_string()),
        }
    }
    let driver = driver.ok();
    let gpus = if cuda_available {
        driver
            .as_ref()
            .map(|d| d.devices.clone())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let default_device = match requested.resolve() {
        Ok(d) => device_name(d),
        Err(e) => format!("unusable ({e})"),
    };
    Doctor {
        nave_lab_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch_version: env!("NAVE_LAB_LIBTORCH_VERSION").to_string(),
        libtorch_path: loaded_library_dir("libtorch_cpu.so"),
        libtorch_build_path: env!("NAVE_LAB_LIBTORCH_LIB").to_string(),
        linked_cuda,
        cpu_threads: tch::get_num_threads(),
        cuda_available,
        cuda_device_count,
        cudnn_available,
        cudnn_version: (cudnn_raw > 0).then(|| cudnn_version_string(cudnn_raw)),
        cuda_runtime_version: (cudart_raw > 0).then(|| cuda_version_string(cudart_raw)),
        cuda_driver_version: driver
            .and_then(|d| (d.version > 0).then(|| cuda_version_string(d.version as i64))),
        gpus,
        default_device,
        notes,
    }
}

/// cuDNN 9 encodes its version as major*10000 + minor*100 + patch.
fn cudnn_version_string(v: i64) -> String {
    if v >= 10000 {
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v / 100) % 10, v % 100)
    }
}

/// CUDA encodes its versions as major*1000 + minor*10.
fn cuda_version_string(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The folder from which a shared library was loaded into this process.
fn loaded_library_dir(name: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.rsplit('/').next() == Some(name))
        .and_then(|path| {
            std::path::Path::new(path)
                .parent()
                .map(|p| p.display().to_string())
        })
}

impl fmt::Display for Doctor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "nave-lab          {}", self.nave_lab_version)?;
        writeln!(f, "libtorch          {}", self.libtorch_version)?;
        writeln!(
            f,
            "libtorch loaded   {}",
            self.libtorch_path
                .as_deref()
                .unwrap_or("(not found in the process map)")
        )?;
        writeln!(f, "libtorch linked   {}", self.libtorch_build_path)?;
        writeln!(f, "CUDA linked       {}", yes_no(self.linked_cuda))?;
        writeln!(f, "CPU threads       {}", self.cpu_threads)?;
        writeln!(f, "CUDA available    {}", yes_no(self.cuda_available))?;
        if let Some(v) = &self.cuda_driver_version {
            writeln!(f, "CUDA driver       {v}")?;
        }
        if let Some(v) = &self.cuda_runtime_version {
            writeln!(f, "CUDA runtime      {v}")?;
        }
        writeln!(
            f,
            "cuDNN             {}",
            match (&self.cudnn_version, self.cudnn_available) {
                (Some(v), _) => v.clone(),
                (None, true) => "available".to_string(),
                (None, false) => "not available".to_string(),
            }
        )?;
        for gpu in &self.gpus {
            writeln!(
                f,
                "GPU {}             {} ({:.1} GiB, compute {})",
                gpu.index,
                gpu.name,
                gpu.memory_bytes as f64 / (1u64 << 30) as f64,
                gpu.compute_capability
            )?;
        }
        writeln!(f, "default device    {}", self.default_device)?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// GPU names and memory straight from the NVIDIA driver API (libcuda), which
/// libtorch does not expose through tch. Loaded at run time so that a machine
/// without a driver simply reports none.
mod cuda_driver {
    use super::GpuInfo;
    use std::os::raw::{c_char, c_int, c_uint};

    pub struct DriverInfo {
        pub version: i32,
        pub devices: Vec<GpuInfo>,
    }

    type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
    type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
    type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;

    const ATTR_COMPUTE_MAJOR: c_int = 75;
    const ATTR_COMPUTE_MINOR: c_int = 76;

    pub fn probe() -> Result<DriverInfo, String> {
        // SAFETY: the signatures above are the driver API's documented C ABI
        // (cuda.h); every out-pointer points at a live local.
        unsafe {
            let lib = libloading::Library::new("libcuda.so.1")
                .map_err(|_| "libcuda.so.1 (the NVIDIA driver) is not installed".to_string())?;
            let sym = |name: &[u8]| -> Result<*const (), String> {
                lib.get::<*const ()>(name)
                    .map(|s| *s)
                    .map_err(|e| format!("libcuda lacks {}: {e}", String::from_utf8_lossy(name)))
            };
            let cu_init: CuInit = std::mem::transmute(sym(b"cuInit\0")?);
            let get_version: CuDriverGetVersion =
                std::mem::transmute(sym(b"cuDriverGetVersion\0")?);
            let get_count: CuDeviceGetCount = std::mem::transmute(sym(b"cuDeviceGetCount\0")?);
            let get_device: CuDeviceGet = std::mem::transmute(sym(b"cuDeviceGet\0")?);
            let get_name: CuDeviceGetName = std::mem::transmute(sym(b"cuDeviceGetName\0")?);
            let total_mem: CuDeviceTotalMem = std::mem::transmute(sym(b"cuDeviceTotalMem_v2\0")?);
            let get_attr: CuDeviceGetAttribute =
                std::mem::transmute(sym(b"cuDeviceGetAttribute\0")?);

            let mut version = 0;
            get_version(&mut version);
            let rc = cu_init(0);
            if rc != 0 {
                return Err(format!("cuInit failed with CUDA error {rc}"));
            }
            let mut count = 0;
            if get_count(&mut count) != 0 {
                return Err("cuDeviceGetCount failed".to_string());
            }
            let mut devices = Vec::new();
            for index in 0..count {
                let mut dev = 0;
                if get_device(&mut dev, index) != 0 {
                    continue;
                }
                let mut name = [0 as c_char; 256];
                get_name(name.as_mut_ptr(), name.len() as c_int, dev);
                let name = std::ffi::CStr::from_ptr(name.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                let mut bytes = 0usize;
                total_mem(&mut bytes, dev);
                let (mut major, mut minor) = (0, 0);
                get_attr(&mut major, ATTR_COMPUTE_MAJOR, dev);
                get_attr(&mut minor, ATTR_COMPUTE_MINOR, dev);
                devices.push(GpuInfo {
                    index: index as usize,
                    name,
                    memory_bytes: bytes as u64,
                    compute_capability: format!("{major}.{minor}"),
                });
            }
            Ok(DriverInfo { version, devices })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_requests() {
        assert_eq!("auto".parse::<DeviceRequest>(), Ok(DeviceRequest::Auto));
        assert_eq!("CPU".parse::<DeviceRequest>(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse::<DeviceRequest>(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(
            "cuda:3".parse::<DeviceRequest>(),
            Ok(DeviceRequest::Cuda(3))
        );
        assert!("cuda:x"
            .parse::<DeviceRequest>()
            .unwrap_err()
            .contains("cuda:0"));
        assert!("tpu"
            .parse::<DeviceRequest>()
            .unwrap_err()
            .contains("auto, cpu, cuda"));
    }

    #[test]
    fn version_strings() {
        assert_eq!(cudnn_version_string(91900), "9.19.0");
        assert_eq!(cuda_version_string(13000), "13.0");
        assert_eq!(cuda_version_string(12080), "12.8");
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(DeviceRequest::Cpu.resolve().unwrap(), Device::Cpu);
    }
}
