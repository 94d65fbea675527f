//! The parts of the kernel's FUSE protocol (`include/uapi/linux/fuse.h`) a one-file-per-device
//! file system needs: the headers, the request and answer structs it reads and writes, opcodes
//! and flags. Every struct is `#[repr(C)]` plain data, read from and written as bytes.

/// The protocol we speak: 7.31 (kernel 5.4). Every struct below has its 7.31 size.
pub const KERNEL_VERSION: u32 = 7;
pub const KERNEL_MINOR: u32 = 31;

pub const LOOKUP: u32 = 1;
pub const FORGET: u32 = 2;
pub const GETATTR: u32 = 3;
pub const SETATTR: u32 = 4;
pub const OPEN: u32 = 14;
pub const READ: u32 = 15;
pub const WRITE: u32 = 16;
pub const STATFS: u32 = 17;
pub const RELEASE: u32 = 18;
pub const FSYNC: u32 = 20;
pub const FLUSH: u32 = 25;
pub const INIT: u32 = 26;
pub const OPENDIR: u32 = 27;
pub const READDIR: u32 = 28;
pub const RELEASEDIR: u32 = 29;
pub const FSYNCDIR: u32 = 30;
pub const INTERRUPT: u32 = 36;
pub const DESTROY: u32 = 38;
pub const BATCH_FORGET: u32 = 42;
pub const FALLOCATE: u32 = 43;

/// Notify code asking the kernel to queue again every request read but not answered
/// (kernel ≥ 6.9).
pub const NOTIFY_RESEND: i32 = 7;

// INIT flags.
pub const ASYNC_READ: u32 = 1 << 0;
pub const BIG_WRITES: u32 = 1 << 5;
pub const ASYNC_DIO: u32 = 1 << 15;
pub const MAX_PAGES: u32 = 1 << 22;

// OPEN answer flags.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;

// SETATTR valid bits.
pub const FATTR_SIZE: u32 = 1 << 3;

/// Marks plain-data structs that may be built from any bytes and written out as bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, hold only integers and have no padding.
pub unsafe trait Pod: Copy + Default {}

/// Reads a `T` from the start of `b` (None when too short).
pub fn read<T: Pod>(b: &[u8]) -> Option<T> {
    if b.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is Pod (any bytes are a valid T) and `b` holds size_of::<T>() bytes;
    // read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

/// The bytes of a `T`.
pub fn bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding, so every byte is initialised) and the slice covers
    // exactly the value, borrowed for as long as it is.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Marks each struct Pod and checks at compile time that it has the kernel's size.
macro_rules! pod {
    ($($t:ident = $size:literal),*) => { $(
        // SAFETY: repr(C), integers only, fields laid out without padding (the size check
        // below equals the sum of the fields).
        unsafe impl Pod for $t {}
        const _: () = assert!(size_of::<$t>() == $size);
    )* };
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub total_extlen: u16,
    pub padding: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct OutHeader {
    pub len: u32,
    pub error: i32,
    pub unique: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    pub max_pages: u16,
    pub map_alignment: u16,
    pub unused: [u32; 8],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub ctimensec: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct EntryOut {
    pub nodeid: u64,
    pub generation: u64,
    pub entry_valid: u64,
    pub attr_valid: u64,
    pub entry_valid_nsec: u32,
    pub attr_valid_nsec: u32,
    pub attr: Attr,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct AttrOut {
    pub attr_valid: u64,
    pub attr_valid_nsec: u32,
    pub dummy: u32,
    pub attr: Attr,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SetattrIn {
    pub valid: u32,
    pub padding: u32,
    pub fh: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct OpenIn {
    pub flags: u32,
    pub open_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct OpenOut {
    pub fh: u64,
    pub open_flags: u32,
    pub padding: u32,
}

/// READ and READDIR.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ReadIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub read_flags: u32,
    pub lock_owner: u64,
    pub flags: u32,
    pub padding: u32,
}

/// WRITE; the data follows.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct WriteIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub write_flags: u32,
    pub lock_owner: u64,
    pub flags: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct WriteOut {
    pub size: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct StatfsOut {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
    pub padding: u32,
    pub spare: [u32; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct FallocateIn {
    pub fh: u64,
    pub offset: u64,
    pub length: u64,
    pub mode: u32,
    pub padding: u32,
}

/// One READDIR entry; the name follows, the whole padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Dirent {
    pub ino: u64,
    pub off: u64,
    pub namelen: u32,
    pub typ: u32,
}

// The kernel's sizes; SetattrIn is the prefix we read of its 88 bytes.
pod!(
    InHeader = 40,
    OutHeader = 16,
    InitIn = 16,
    InitOut = 64,
    Attr = 88,
    EntryOut = 128,
    AttrOut = 104,
    SetattrIn = 24,
    OpenIn = 8,
    OpenOut = 16,
    ReadIn = 40,
    WriteIn = 40,
    WriteOut = 8,
    StatfsOut = 80,
    FallocateIn = 32,
    Dirent = 24
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_what_was_written() {
        let h = OutHeader {
            len: 16,
            error: -5,
            unique: 77,
        };
        let r: OutHeader = read(bytes(&h)).unwrap();
        assert_eq!((r.len, r.error, r.unique), (16, -5, 77));
        assert!(read::<OutHeader>(&[0; 15]).is_none());
    }
}
