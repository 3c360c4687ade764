// Random access to stored files lives here (the virtual read issue): a byte range or a tensor of a
// stored file, rebuilt from its chunks without materialising the whole file.
import TenPakModelStore
